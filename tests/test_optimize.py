"""Compiling on a scripted LM: every optimizer, save/load round trips, leave-one-out dev, label checks, CLI."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from promptmix_dspy.compile.config import CompileConfig
from promptmix_dspy.compile.optimize import class_cards, compile_programs
from promptmix_dspy.compile.optimizers import OPTIMIZERS, parse_settings
from promptmix_dspy.data.fewshot import few_shot_split
from promptmix_dspy.data.types import Dataset, Example
from promptmix_dspy.llm.adapters import PromptMixAdapter
from promptmix_dspy.llm.settings import LMHandle
from promptmix_dspy.method.modules import PromptMix
from promptmix_dspy.method.programs import load_compiled, read_meta
from promptmix_dspy.testing import (
    ConcurrencyProbe,
    RuleResponder,
    ScriptedServer,
    candidate_names,
    distinct_words,
    numbered,
    parse_fields,
    scripted_lm,
)

LABELS = ["weather", "sports", "music"]
SMALL = {  # budgets that keep every optimizer to a few dozen scripted calls
    "labeled": {"k": 2}, "bootstrap": {"max_bootstrapped_demos": 2, "max_labeled_demos": 2},
    "random-search": {"num_candidate_programs": 1, "max_bootstrapped_demos": 2, "max_labeled_demos": 0},
    "mipro": {"auto": None, "num_candidates": 2, "num_trials": 2}, "gepa": {"max_metric_calls": 30},
}


def _dataset(labels: list[str] = LABELS) -> Dataset:
    train = [Example(f"a {lab} example number {i}", lab) for lab in labels for i in range(6)]
    return Dataset("toy", labels, train, [], {lab: f"texts about {lab}" for lab in labels})


def _generate(fields: dict, n: int) -> list[str]:
    """Texts that name only the majority class, distinct per call: the judge labels them right."""
    return [f"{fields['majority_class']} story: {distinct_words(f'{n}-{i}')}" for i in range(int(fields["num_texts"]))]


def _stable(fields: dict, n: int) -> list[str]:
    """Like _generate, but a function of the prompt only: the same prompt gets the same texts."""
    return [f"{fields['majority_class']} story: {distinct_words(f'{len(str(fields))}-{i}')}"
            for i in range(int(fields["num_texts"]))]


def _handle(responder=None) -> LMHandle:
    lm = scripted_lm(responder or RuleResponder(generate=_generate))
    return LMHandle(lm, PromptMixAdapter(), "openai/scripted", None, "promptmix", embedded=False)


def _config(optimizer: str = "bootstrap", **kw) -> CompileConfig:
    return CompileConfig(optimizer=optimizer, settings=SMALL[optimizer], top_k=3, group_size=3, num_threads=1,
                         **kw)


def _one_label(messages: list[dict]) -> bool:
    """A one-text relabel call (the bare answer the lean adapters ask for)."""
    return "of one candidate only." in messages[0]["content"]


def _picky(messages: list[dict], params: dict) -> str:
    """Labels right only when the instruction says 'carefully' (which the scripted reflection LM proposes)."""
    answer = RuleResponder(generate=_generate)(messages, params)
    if _one_label(messages) and "carefully" not in messages[0]["content"]:
        return _wrong(messages, answer)
    return answer


def _wrong(messages: list[dict], answer: str) -> str:
    """Another candidate than the given answer (the candidates are the cards of the prompt)."""
    candidates = candidate_names(parse_fields(messages[0]["content"])["class_cards"])
    return next(c for c in candidates if c != answer)


def _reflection_lm():
    return scripted_lm(lambda messages, params: json.dumps(
        {"new_instruction": "Read the class cards carefully, then name the class of the text."}))


def _fresh(handle: LMHandle, ds: Dataset | None = None) -> PromptMix:
    ds = ds or _dataset()
    return PromptMix(class_cards(few_shot_split(ds, 2, 0), handle))


# ----------------------------------------------------------------------------------------------------------
# every optimizer must do something: a scripted LM that is right only when compiling taught it


HARD = "hard"
TRIGGER = "NEVER REPEAT"  # what the scripted proposer and reflection LM put in the instructions they write


def _two_seed_dataset() -> Dataset:
    """Two texts per class, so both are seeds: one easy, one hard."""
    train = [Example(text, lab) for lab in LABELS for text in (f"a {lab} example", f"a {HARD} {lab} case")]
    return Dataset("toy2", LABELS, train, [], {lab: f"texts about {lab}" for lab in LABELS},
                   task="The texts are short messages, classified by topic.")


def _compiled_demos(messages: list[dict]) -> bool:
    """A curated demo set: one or two solved examples before the request. The uncompiled relabeler shows every
    seed but the one scored (five here); the optimizers' budgets below keep two."""
    return 1 <= sum(m["role"] == "user" for m in messages) - 1 <= 2


def _propose(name: str, fields: dict) -> str:
    return f"Read the class cards carefully and label every text. {TRIGGER}: write new texts on new topics."


def _teachable(messages: list[dict], params: dict) -> str:
    """Labels easy texts right; a hard one only with compiled demos, or an instruction that says 'carefully'.
    Writes copies of the cards' examples, unless it sees demos or an instruction with the TRIGGER."""
    system = messages[0]["content"]
    taught = _compiled_demos(messages) or "carefully" in system
    answer = RuleResponder(generate=_generate, propose=_propose)(messages, params)
    if _one_label(messages):
        hard = HARD in parse_fields(messages[-1]["content"])["text"]
        return _wrong(messages, answer) if hard and not taught else answer
    answer = json.loads(answer)
    if "texts" in answer and not (len(messages) > 2 or TRIGGER in system):
        examples = re.findall(r'"([^"]+)"', system.split("[[ ## class_cards ## ]]", 1)[-1])
        answer["texts"] = (examples * 3)[:len(answer["texts"])]  # seed copies: clean-up drops every one
    return json.dumps(answer)


def _reflection(messages: list[dict], params: dict) -> str:
    return json.dumps({"new_instruction": _propose("new_instruction", {})})


@pytest.mark.parametrize("name", ["labeled", "bootstrap", "random-search", "mipro", "gepa"])
def test_every_optimizer_compiles_a_better_relabeler_that_reloads_to_the_same_outputs(tmp_path, name):
    handle = _handle(_teachable)
    reflection = scripted_lm(_reflection) if OPTIMIZERS[name].needs_reflection_lm else None
    config = CompileConfig(optimizer=name, program="relabeler", settings=SMALL[name], top_k=3, num_threads=1)
    result = compile_programs(_two_seed_dataset(), tmp_path, config, handle, reflection_lm=reflection)["relabeler"]
    assert (result.dev_before, result.kept) == (0.5, "compiled")  # LOO: the easy seeds right, the hard wrong
    assert result.dev_after == 1.0 and result.tried == {name: 1.0}
    meta = read_meta(tmp_path)["programs"]["relabeler"]
    assert (meta["optimizer"], meta["dev_before"], meta["dev_after"]) == (name, 0.5, 1.0)
    loaded = PromptMix(class_cards(few_shot_split(_two_seed_dataset(), 2, 0), handle),
                       task=_two_seed_dataset().task)
    load_compiled(loaded, tmp_path, LABELS)
    probe = [f"a {HARD} music case, new", f"a {HARD} sports case, new"]
    with handle.context():
        assert [loaded.relabeler(text=t).label for t in probe] == ["music", "sports"]
        assert [result.program(text=t).label for t in probe] == ["music", "sports"]
    uncompiled = PromptMix(list(loaded.cards.values()), task=_two_seed_dataset().task)
    with handle.context():
        assert [uncompiled.relabeler(text=t).label for t in probe] != ["music", "sports"]


@pytest.mark.parametrize("name", ["labeled", "mipro", "gepa"])
def test_a_generator_that_copies_seeds_is_compiled_into_one_that_writes_new_texts(tmp_path, name):
    handle = _handle(_teachable)
    reflection = scripted_lm(_reflection) if OPTIMIZERS[name].needs_reflection_lm else None
    config = CompileConfig(optimizer=name, program="generator", settings=SMALL[name], top_k=3, group_size=3,
                           num_threads=1)
    result = compile_programs(_dataset(), tmp_path, config, handle, reflection_lm=reflection)["generator"]
    assert result.dev_before == 0.0 and result.dev_after > 0.5 and result.kept == "compiled"
    loaded = _fresh(handle)
    load_compiled(loaded, tmp_path, LABELS)
    cards = list(loaded.cards.values())
    call = dict(class_cards=cards, majority_class="music", minority_class="sports", majority_share=0.8, num_texts=2)
    with handle.context():
        assert loaded.generator(**call).texts == result.program(**call).texts
        assert len(loaded.generator(**call).texts) == 2 and _fresh(handle).generator(**call).texts == []


def test_several_optimizers_are_tried_and_the_best_on_dev_is_kept(tmp_path):
    handle = _handle(_teachable)
    config = CompileConfig(optimizer="labeled,bootstrap", program="relabeler", top_k=3, num_threads=1,
                           settings={"k": 1, "max_bootstrapped_demos": 1, "max_labeled_demos": 0})
    result = compile_programs(_two_seed_dataset(), tmp_path, config, handle)["relabeler"]
    assert set(result.tried) == {"labeled", "bootstrap"} and result.optimizer == max(result.tried,
                                                                                     key=result.tried.get)
    assert read_meta(tmp_path)["programs"]["relabeler"]["tried"] == result.tried


def test_the_held_out_candidates_leave_the_scored_seed_out_of_the_centroids(tmp_path, monkeypatch):
    """top_k < number of classes: the candidates of a seed being scored are chosen without that seed."""
    from promptmix_dspy.compile import tasks

    built = []
    real = tasks.CandidateSelector

    def recording(seeds_by_label, encoder=None, top_k=5):
        built.append({label: list(texts) for label, texts in seeds_by_label.items()})
        return real(seeds_by_label, encoder, top_k)

    monkeypatch.setattr(tasks, "CandidateSelector", recording)
    ds = _dataset(["weather", "sports", "music", "politics"])
    config = CompileConfig(optimizer="labeled", program="relabeler", top_k=2, num_threads=1)
    compile_programs(ds, tmp_path, config, _handle())
    seeds = {e.text for e in few_shot_split(ds, 2, 0).seeds}
    assert len(built) == len(seeds)  # one held-out selector per scored seed
    for held_out in built:
        missing = seeds - {t for texts in held_out.values() for t in texts}
        assert len(missing) == 1  # exactly the seed being scored is left out


def test_gepa_without_a_reflection_lm_is_refused(tmp_path):
    with pytest.raises(ValueError, match="reflection LM"):
        compile_programs(_dataset(), tmp_path, _config("gepa"), _handle())


@pytest.mark.parametrize("optimizer,compact", [("labeled", True), ("bootstrap", False)])
def test_leave_one_out_never_shows_a_seed_its_own_text(tmp_path, optimizer, compact):
    handle = _handle()
    config = _config(optimizer, program="relabeler", compact_demos=compact)
    result = compile_programs(_dataset(), tmp_path, config, handle)["relabeler"]
    # full bootstrapped demos carry class cards, whose examples are seeds too: those demos must go as well
    bootstrapped = [d for d in result.program.classify.demos if d.get("augmented")]
    assert all(("class_cards" in d) == (not compact) for d in bootstrapped)
    assert bootstrapped or optimizer == "labeled"
    seeds = {e.text for e in few_shot_split(_dataset(), 2, 0).seeds}
    scored = 0
    for request in handle.lm.requests:
        prompt = "\n".join(m["content"] for m in request["messages"])
        text = parse_fields(request["messages"][-1]["content"]).get("text")
        if text in seeds:
            scored += 1
            assert prompt.count(text) == 1, f"{text!r} was shown in its own prompt"
    assert scored >= 2 * len(seeds)  # every seed scored before and after compiling
    assert result.program.classify.demos  # the demos are seeds, yet never the one being scored
    assert read_meta(tmp_path)["programs"]["relabeler"]["dev_mode"] == "leave-one-out"


def test_a_dev_split_is_used_when_asked_and_recorded(tmp_path):
    compile_programs(_dataset(), tmp_path, _config("labeled", program="relabeler", dev_per_class=2), _handle())
    record = read_meta(tmp_path)["programs"]["relabeler"]
    assert (record["dev_mode"], record["dev_size"]) == ("dev-split", 6)
    assert record["config"]["dev_per_class"] == 2 and record["config"]["top_k"] == 3


def test_a_program_compiled_for_other_labels_is_refused(tmp_path):
    handle = _handle()
    compile_programs(_dataset(), tmp_path, _config("labeled"), handle)
    other = ["weather", "sports", "politics"]
    with pytest.raises(ValueError) as err:
        load_compiled(_fresh(handle, _dataset(other)), tmp_path, other)
    assert str(LABELS) in str(err.value) and str(other) in str(err.value)
    calls = len(handle.lm.requests)
    with pytest.raises(ValueError, match="compiled for labels"):  # nor may a compile merge into that folder
        compile_programs(_dataset(other), tmp_path, _config("labeled"), handle)
    assert len(handle.lm.requests) == calls  # refused before any LM work


def test_the_judges_calls_never_become_generator_demos(tmp_path):
    result = compile_programs(_dataset(), tmp_path, _config("bootstrap", program="generator"), _handle())
    demos = result["generator"].program.generate.demos
    assert demos and all("texts" in d and "label" not in d and "text" not in d for d in demos)
    assert read_meta(tmp_path)["programs"]["generator"]["judge"] == "the uncompiled relabeler"


def test_a_later_generator_compile_is_judged_by_the_compiled_relabeler(tmp_path):
    handle = _handle(_picky)  # wrong labels unless the (GEPA-compiled) instruction says "carefully"
    config = CompileConfig(optimizer="gepa", program="relabeler", settings={"max_metric_calls": 40}, top_k=3)
    compile_programs(_dataset(), tmp_path, config, handle, reflection_lm=_reflection_lm())
    result = compile_programs(_dataset(), tmp_path, _config("labeled", program="generator"), handle)["generator"]
    assert result.dev_before == 1.0 and result.judge == f"the compiled relabeler saved in {tmp_path}"
    assert set(read_meta(tmp_path)["programs"]) == {"relabeler", "generator"}  # merged, not replaced


def test_settings_pass_through_and_unknown_ones_fail():
    assert parse_settings(["k=2", "auto=light", "auto2=null", "x=0.5"]) == {"k": 2, "auto": "light",
                                                                             "auto2": None, "x": 0.5}
    resolved = OPTIMIZERS["mipro"].resolve({"num_candidates": 3, "num_trials": 5}, valset_size=6, seed=7)
    assert resolved["auto"] is None and resolved["minibatch_size"] == 6 and resolved["seed"] == 7
    with pytest.raises(ValueError, match="taken by none of|does not take"):
        CompileConfig(optimizer="labeled", settings={"max_bootstrapped_demos": 2})
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_settings(["k"])


SECRET = "sk-test-do-not-save-0123456789"


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "promptmix_dspy.cli", *args], capture_output=True, text=True,
                          env={**os.environ, "PROMPTMIX_TEST_KEY": SECRET}, timeout=600)


def _write_toy(folder: Path) -> Path:
    folder.mkdir()
    rows = [{"text": e.text, "label": e.label} for e in _dataset().train]
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "descriptions.json").write_text(json.dumps({lab: f"texts about {lab}" for lab in LABELS}))
    return folder


def test_cli_compile_then_augment_with_the_programs(tmp_path):
    data, programs = _write_toy(tmp_path / "toy"), tmp_path / "programs"
    common = ["--dataset", str(data), "--descriptions", str(data / "descriptions.json"), "--top-k", "3",
              "--threads", "1"]
    with ScriptedServer(RuleResponder(generate=_generate)) as server:
        lm = ["--lm", "hosted_vllm/scripted", "--api-base", server.base_url, "--api-key-env", "PROMPTMIX_TEST_KEY"]
        made = _cli("compile", *common, *lm, "--optimizer", "bootstrap", "--opt", "max_bootstrapped_demos=1",
                    "--out", str(programs))
        used = _cli("augment", *common, *lm, "--per-class", "2", "--group-size", "3", "--programs",
                    str(programs), "--out", str(tmp_path / "run"))
    assert made.returncode == 0, made.stderr[-2000:]
    assert "relabeler: dev label accuracy (leave-one-out, n=6) uncompiled 1.000; bootstrap 1.000" in made.stdout
    assert used.returncode == 0, used.stderr[-2000:]
    assert "using the compiled relabeler" in used.stderr and "kept 6 examples" in used.stdout
    assert all(SECRET not in f.read_text() for f in programs.iterdir())  # the key was used, never saved


def _spoiled_by_demos(messages: list[dict], params: dict) -> str:
    """Labels right with the uncompiled relabeler's seeds as solved examples, wrong once a compiled demo set of
    one or two replaces them."""
    answer = RuleResponder(generate=_generate)(messages, params)
    return _wrong(messages, answer) if _one_label(messages) and _compiled_demos(messages) else answer


@pytest.mark.parametrize("keep_worse", [False, True])
def test_a_compile_that_lowers_the_dev_score_keeps_the_original_unless_asked(tmp_path, keep_worse):
    handle = _handle(_spoiled_by_demos)
    config = CompileConfig(optimizer="labeled", program="relabeler", top_k=3, num_threads=1, keep_worse=keep_worse,
                           settings={"k": 1})
    result = compile_programs(_dataset(), tmp_path, config, handle)["relabeler"]
    # leave-one-out: the one compiled demo spoils every seed but itself (scored without it, as uncompiled)
    assert (result.dev_before, result.dev_after) == (1.0, round(1 / 6, 4))
    saved = read_meta(tmp_path)["programs"]["relabeler"]
    assert saved["kept"] == ("compiled" if keep_worse else "uncompiled")
    assert (saved["demos"]["classify"] > 0) == keep_worse
    program = _fresh(handle)
    load_compiled(program, tmp_path, LABELS)
    assert (len(program.relabeler.classify.demos) > 0) == keep_worse
    generator = compile_programs(_dataset(), tmp_path, _config("labeled", program="generator"), handle)["generator"]
    assert generator.judge == f"the {'compiled' if keep_worse else 'uncompiled'} relabeler saved in {tmp_path}"


def test_cli_keep_worse_saves_the_compiled_program(tmp_path):
    data = _write_toy(tmp_path / "toy")
    with ScriptedServer(_spoiled_by_demos) as server:
        made = _cli("compile", "--dataset", str(data), "--descriptions", str(data / "descriptions.json"),
                    "--top-k", "3", "--threads", "1", "--lm", "hosted_vllm/scripted", "--api-base", server.base_url,
                    "--program", "relabeler", "--optimizer", "labeled", "--opt", "k=1", "--keep-worse",
                    "--out", str(tmp_path / "p"))
    assert made.returncode == 0, made.stderr[-2000:]
    assert "1.000 -> 0.167" in made.stdout and "saved the compiled program" in made.stdout
    assert read_meta(tmp_path / "p")["programs"]["relabeler"]["kept"] == "compiled"


COMMITTED = Path(__file__).resolve().parents[1] / "programs"
COMMITTED_FOLDERS = sorted(p.parent for p in COMMITTED.glob("*/seed*/meta.json"))


def test_programs_are_committed_for_at_least_one_dataset():
    assert COMMITTED_FOLDERS, "programs/<dataset>/seed<k>/ holds no compiled programs"


@pytest.mark.parametrize("folder", COMMITTED_FOLDERS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_the_committed_programs_load_for_their_labels_and_rows_and_are_refused_for_others(data_dir, folder):
    """programs/<dataset>/seed<k> in the repository: JSON that loads into fresh modules for its dataset's labels,
    compiled on exactly that seed's labelled rows."""
    from promptmix_dspy.data.datasets import load_dataset
    from promptmix_dspy.method.programs import ProgramsMismatch, check_rows

    ds = load_dataset(folder.parent.name, data_dir=data_dir)
    seed, dev = int(folder.name.removeprefix("seed").split("-")[0]), int(read_meta(folder)["dev_per_class"])
    check_rows(read_meta(folder), few_shot_split(ds, 2, seed, dev), folder)
    with pytest.raises(ProgramsMismatch, match=f"seed {seed}"):
        check_rows(read_meta(folder), few_shot_split(ds, 2, seed + 1, dev), folder)
    handle = _handle()
    meta = load_compiled(PromptMix(class_cards(few_shot_split(ds, 2, seed), handle)), folder, ds.labels)
    assert meta["labels"] == ds.labels and set(meta["programs"]) <= {"relabeler", "generator"} and meta["programs"]
    for entry in meta["programs"].values():
        kept_compiled = entry["dev_after"] >= entry["dev_before"] or entry.get("config", {}).get("keep_worse", False)
        assert entry["kept"] == ("compiled" if kept_compiled else "uncompiled"), entry
    with pytest.raises(ValueError, match="labels"):
        load_compiled(_fresh(handle), folder, LABELS)


def test_compile_keeps_no_more_requests_in_flight_than_the_endpoints_slots(tmp_path):
    probe = ConcurrencyProbe(RuleResponder(generate=_generate))
    handle = _handle(probe)
    handle.slots = 1  # an embedded server with one slot
    config = CompileConfig(optimizer="bootstrap", settings=SMALL["bootstrap"], top_k=3, group_size=3, num_threads=4)
    compile_programs(_dataset(), tmp_path, config, handle)
    assert probe.most == 1 and probe.calls > 0
