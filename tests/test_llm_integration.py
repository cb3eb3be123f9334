"""The real embedded LLM: SmolLM2 on llama.cpp's server, reached by litellm over HTTP through our adapter."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from promptmix_dspy.lm import LMSettings, open_lm
from promptmix_dspy.modules import BorderlineGenerator, Relabeler
from promptmix_dspy.signatures import ClassCard

pytestmark = pytest.mark.llama


@pytest.fixture(scope="module")
def cards(data_dir) -> list[ClassCard]:
    from promptmix_dspy.data import few_shot_split, load_dataset

    ds = load_dataset("trec6", data_dir=data_dir)
    split = few_shot_split(ds, k=2, seed=0)
    return [ClassCard(name=lab, description=ds.descriptions[lab], examples=ex)
            for lab, ex in split.seeds_by_label().items()]


def test_relabel_and_generate_through_litellm(cards):
    with open_lm(LMSettings(cache=False)) as handle:
        assert handle.model == "hosted_vllm/smollm2" and handle.adapter_name == "llama-cpp"
        with handle.context():
            labels = [Relabeler(cards)(text=t).label for t in ("Who invented the telephone ?",
                                                               "What does NASA stand for ?")]
            gen = BorderlineGenerator()(class_cards=cards[:4], majority_class=cards[0].name,
                                        minority_class=cards[1].name, majority_share=0.8, num_texts=3)
        history = handle.lm.history[-1]
    assert all(label in {c.name for c in cards} for label in labels)
    assert isinstance(gen.raw_texts, list) and gen.raw_texts and all(isinstance(t, str) for t in gen.raw_texts)
    assert history["kwargs"]["response_format"]["type"] == "json_object"
    assert handle.lm.kwargs["max_tokens"] == 256


def test_augment_cli_on_the_embedded_default(tmp_path, data_dir):
    """The README's main job, small: no --lm, so promptmix starts SmolLM2 itself and stops it at exit."""
    out = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if k not in ("PROMPTMIX_LM", "PROMPTMIX_API_BASE")}
    proc = subprocess.run([sys.executable, "-m", "promptmix_dspy.cli", "augment", "--dataset", "subj",
                           "--data-dir", str(data_dir), "--per-class", "2", "--out", str(out)],
                          capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(line) for line in (out / "augmented.jsonl").read_text().splitlines()]
    assert rows and all(r["label"] in ("objective", "subjective") for r in rows)
    assert all(r["lm"] == "hosted_vllm/smollm2" for r in rows)
    assert json.loads((out / "config.json").read_text())["lm"]["embedded"] is True
