"""The default embedded model for real: Qwen2.5-Coder-1.5B-Instruct, its file verified by sha256, on llama.cpp's
server, reached by litellm over HTTP through the pipeline's Relabeler, with the constrained adapter.

This is the check that the strong model, not the tiny one, is answering: six clear-cut TREC6 train questions
(one per class, none of them a seed), all six classes as candidates, temperature 0; at least four must be right
(SmolLM2 gets about one in six, the majority guess one).
"""

from __future__ import annotations

import pytest

from promptmix_dspy.llm.models import DEFAULT_LOCAL_MODEL, LOCAL_MODELS, resolve_local_model
from promptmix_dspy.llm.settings import LMSettings, open_lm
from promptmix_dspy.method.modules import Relabeler
from promptmix_dspy.method.signatures import ClassCard

pytestmark = [pytest.mark.llama, pytest.mark.qwen]

CLEAR_CUT = [("What does NASDAQ stand for ?", "ABBR"), ("What is the definition of a cascade ?", "DESC"),
             ("What color is an Arctic fox in winter ?", "ENTY"), ("Who invented the radio ?", "HUM"),
             ("Where is the Loop ?", "LOC"), ("How many points make up a perfect fivepin bowling score ?", "NUM")]


def test_the_default_is_qwen_assembled_and_verified(monkeypatch):
    monkeypatch.delenv("PROMPTMIX_LOCAL_MODEL", raising=False)  # conftest points the other tests at SmolLM2
    model = resolve_local_model()
    assert DEFAULT_LOCAL_MODEL == "qwen2.5-coder-1.5b" == model.name and model.verified
    assert model.path.stat().st_size == LOCAL_MODELS[DEFAULT_LOCAL_MODEL].size == 1_117_320_768


def test_qwen_labels_clear_cut_questions_through_the_pipelines_relabeler(data_dir):
    from promptmix_dspy.data.datasets import load_dataset
    from promptmix_dspy.data.fewshot import few_shot_split

    ds = load_dataset("trec6", data_dir=data_dir)
    split = few_shot_split(ds, k=2, seed=0)
    assert not {t for t, _ in CLEAR_CUT} & {e.text for e in split.seeds}
    cards = [ClassCard(name=lab, description=ds.descriptions[lab], examples=ex)
             for lab, ex in split.seeds_by_label().items()]
    relabeler = Relabeler(cards, task=ds.task, top_k=len(cards))
    with open_lm(LMSettings(local_model=DEFAULT_LOCAL_MODEL, server_parallel=1, cache=False)) as handle:
        assert handle.model == "hosted_vllm/qwen2.5-coder-1.5b" and handle.adapter_name == "llama-cpp"
        with handle.context():
            answers = [relabeler(text=text).label for text, _ in CLEAR_CUT]
        sent = handle.lm.history[-1]
    assert sent["kwargs"]["temperature"] == 0.0 and sent["kwargs"]["extra_body"]["grammar"].startswith("root ::= ")
    right = sum(answer == gold for answer, (_, gold) in zip(answers, CLEAR_CUT))
    assert right >= 4, f"only {right} of 6 right: {list(zip(answers, CLEAR_CUT))}"
