"""The real embedded LLM: SmolLM2 on llama.cpp's server, reached by litellm over HTTP through our adapter."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from promptmix_dspy.llm.settings import LMSettings, open_lm
from promptmix_dspy.method.modules import BorderlineGenerator, Relabeler
from promptmix_dspy.method.signatures import ClassCard

pytestmark = pytest.mark.llama


@pytest.fixture(scope="module")
def cards(data_dir) -> list[ClassCard]:
    from promptmix_dspy.data.datasets import load_dataset
    from promptmix_dspy.data.fewshot import few_shot_split

    ds = load_dataset("trec6", data_dir=data_dir)
    split = few_shot_split(ds, k=2, seed=0)
    return [ClassCard(name=lab, description=ds.descriptions[lab], examples=ex)
            for lab, ex in split.seeds_by_label().items()]


QUESTIONS = ("Who invented the telephone ?", "What does NASA stand for ?", "Where is Mount Fuji ?",
             "How many legs does a spider have ?")


def test_relabel_and_generate_through_litellm(cards):
    with open_lm(LMSettings(cache=False)) as handle:
        assert handle.model == "hosted_vllm/smollm2" and handle.adapter_name == "llama-cpp"
        relabeler = Relabeler(cards, top_k=len(cards))
        with handle.context():
            preds = [relabeler(text=t) for t in QUESTIONS]
            relabel_call = handle.lm.history[-1]
            # seeded at the server: one fixed sample (an unseeded one was now and then cut off at max_tokens,
            # which the pipeline retries but a single call cannot)
            gen = BorderlineGenerator(seed=0)(class_cards=cards[:4], majority_class=cards[0].name,
                                        minority_class=cards[1].name, majority_share=0.8, num_texts=3)
        history = handle.lm.history[-1]
    names = {c.name for c in cards}
    for pred in preds:
        probs = pred.probs[0]
        # the model's probabilities over its candidates, from the answer token's logprobs: one per class, summing
        # to 1, and the plain (grammar-constrained, greedy) answer is the most probable class
        assert pred.label in names and set(probs) == names and sum(probs.values()) == pytest.approx(1.0)
        assert max(probs, key=probs.get) == pred.label
    # the answer is as short as the label: a grammar of the class names, a few completion tokens
    assert relabel_call["kwargs"]["extra_body"]["grammar"].startswith('root ::= "ABBR" | "DESC"')
    assert relabel_call["kwargs"]["logprobs"] is True and relabel_call["usage"]["completion_tokens"] <= 4
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
    # the same command again: a new server on a new port, and the run resumes from its journals (no new call)
    files = ("augmented.jsonl", "generated.jsonl", "relabeled.jsonl")
    before = [(out / name).read_bytes() for name in files]
    again = subprocess.run(proc.args, capture_output=True, text=True, env=env, timeout=900)
    assert again.returncode == 0 and "this session: 0 LLM calls" in again.stdout, again.stderr[-3000:]
    assert [(out / name).read_bytes() for name in files] == before


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PROMPTMIX_LM", "PROMPTMIX_API_BASE")}
    return subprocess.run([sys.executable, "-m", "promptmix_dspy.cli", *args], capture_output=True, text=True,
                          env=env, timeout=1200)


def test_compile_on_the_embedded_default_then_augment_with_the_program(tmp_path, data_dir):
    """Compiling against the real model: the relabeler's leave-one-out dev score before and after, saved as JSON,
    then used by augment."""
    programs = tmp_path / "programs"
    made = _cli("compile", "--dataset", "subj", "--data-dir", str(data_dir), "--program", "relabeler",
                "--optimizer", "labeled", "--threads", "2", "--out", str(programs))
    assert made.returncode == 0, made.stderr[-3000:]
    meta = json.loads((programs / "meta.json").read_text())
    relabeler = meta["programs"]["relabeler"]
    assert relabeler["dev_mode"] == "leave-one-out" and relabeler["dev_size"] == 4
    assert all((4 * relabeler[k]).is_integer() for k in ("dev_before", "dev_after"))  # scores of 4 seeds
    saved = json.loads((programs / "relabeler.json").read_text())
    assert len(saved["classify"]["demos"]) == (4 if relabeler["kept"] == "compiled" else 0)  # the file is the record
    assert meta["labels"] == ["objective", "subjective"] and "smollm2" in json.dumps(meta)
    used = _cli("augment", "--dataset", "subj", "--data-dir", str(data_dir), "--per-class", "2", "--programs",
                str(programs), "--out", str(tmp_path / "run"))
    assert used.returncode == 0, used.stderr[-3000:]
    assert "using the compiled relabeler" in used.stderr
    rows = [json.loads(line) for line in (tmp_path / "run" / "augmented.jsonl").read_text().splitlines()]
    assert rows and all(r["label"] in ("objective", "subjective") for r in rows)


def test_run_a2_end_to_end_on_the_embedded_default(tmp_path, data_dir):
    """One cell of the paper's table with the real components: SmolLM2 generates and relabels, the packaged
    MiniLM student trains on the result and is scored on the whole SUBJ test split."""
    out = tmp_path / "cell"
    proc = _cli("run", "--dataset", "subj", "--method", "a2", "--per-class", "2", "--epochs", "1", "--min-steps", "0", "--data-dir",
                str(data_dir), "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((out / "result.json").read_text())
    assert result["method"] == "a2" and result["n_test"] == 2000
    predictions = [json.loads(line) for line in (out / "eval" / "predictions.jsonl").read_text().splitlines()]
    assert len(predictions) == 2000
    assert result["accuracy"] == pytest.approx(sum(p["prediction"] == p["label"] for p in predictions) / 2000)
    assert result["llm"]["llm_calls"] > 0 and result["train_rows"] > 4
    assert (out / "eval" / "confusion.png").stat().st_size > 0
