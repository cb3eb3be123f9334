"""Compile the relabeler and the generator with DSPy optimizers; save them as JSON + meta.json.

    from promptmix_dspy.compile.config import CompileConfig
    from promptmix_dspy.compile.optimize import compile_programs
    with open_lm(LMSettings()) as handle:
        config = CompileConfig(optimizer="bootstrap,mipro")  # each is tried; the best on dev is kept
        results = compile_programs(load_dataset("trec6"), "programs/trec6", config, handle)
    results["relabeler"].dev_before, results["relabeler"].dev_after, results["relabeler"].tried

A compiled folder holds ``relabeler.json`` and/or ``generator.json`` (DSPy's JSON state: demos and
instructions, never pickle) and ``meta.json`` (labels, LM, optimizer and settings, dev mode, dev score before
and after, versions, date). ``load_compiled`` puts that state into a PromptMix built for the same labels.
"""

from __future__ import annotations

import logging
import time
from dataclasses import fields
from pathlib import Path
from typing import Any

import dspy

from promptmix_dspy.compile.config import CompileConfig, CompileResult
from promptmix_dspy.compile.optimizers import get_optimizer
from promptmix_dspy.compile.tasks import Task, generator_task, relabeler_task
from promptmix_dspy.data.fewshot import FewShotSplit, few_shot_split
from promptmix_dspy.data.types import Dataset
from promptmix_dspy.llm.settings import LMHandle
from promptmix_dspy.method.candidates import CandidateSelector
from promptmix_dspy.method.modules import ClassDescriber, Relabeler
from promptmix_dspy.method.programs import META, check_labels, labelled_rows_sha256, load_state, read_meta
from promptmix_dspy.method.protocol import PROTOCOL_VERSION
from promptmix_dspy.method.signatures import ClassCard
from promptmix_dspy.llm.runner import RunStopped
from promptmix_dspy.store.files import atomic_write_json, now_iso, versions
from promptmix_dspy.store.redaction import redact

__all__ = ["build_selector", "check_reflection_lm", "check_spending", "class_cards", "compile_programs",
           "evaluate_program", "save_compiled"]

logger = logging.getLogger(__name__)
CARD_FIELDS = ("candidate_classes", "class_cards")








def compile_programs(dataset: Dataset, out_dir: str | Path | None, config: CompileConfig, handle: LMHandle,
                     reflection_lm: Any = None) -> dict[str, CompileResult]:
    """Compile the relabeler and/or the generator; save them to ``out_dir`` when given.

    The generator is judged by a frozen relabeler: the one compiled in this run, else a compiled relabeler
    already in ``out_dir``, else the uncompiled one (meta.json says which).
    """
    check_reflection_lm(config, reflection_lm)
    if out_dir is not None and (Path(out_dir) / META).exists():  # fail before the LM work, not after
        check_labels(read_meta(out_dir).get("labels", []), dataset.labels, Path(out_dir))
    if config.max_cost is not None and hasattr(handle.lm, "limit_spending"):
        handle.lm.limit_spending(config.max_cost)
    split = few_shot_split(dataset, config.shots, config.seed, config.dev_per_class)
    cards, task_text = class_cards(split, handle), dataset.task
    selector = build_selector(cards, config)
    results: dict[str, CompileResult] = {}
    if "relabeler" in config.programs:
        results["relabeler"] = _compile(relabeler_task(split, cards, selector, task_text), config, handle,
                                        reflection_lm)
        _save(out_dir, results, "relabeler", split, handle, reflection_lm, config)
    if "generator" in config.programs:
        judge, judged_by = _judge(Relabeler(cards, selector, task=task_text), results, out_dir)
        task = generator_task(split, cards, judge, calls_per_class=config.generator_calls,
                              dev_calls_per_class=config.generator_dev_calls,
                              texts_per_call=config.texts_per_call, group_size=config.group_size, task=task_text)
        results["generator"] = _compile(task, config, handle, reflection_lm, judge=judged_by)
        _save(out_dir, results, "generator", split, handle, reflection_lm, config)
    return results


def _save(out_dir: str | Path | None, results: dict[str, CompileResult], name: str, split: FewShotSplit,
          handle: LMHandle, reflection_lm: Any, config: CompileConfig) -> None:
    """Each program is saved as soon as it is compiled: a stop later (--max-cost, Ctrl-C) loses none."""
    if out_dir is not None:
        save_compiled(out_dir, {name: results[name]}, split, handle, reflection_lm, config)


def _judge(judge: Relabeler, results: dict[str, CompileResult],
           out_dir: str | Path | None) -> tuple[Relabeler, str]:
    """The relabeler that scores generated texts (its labels were checked against out_dir's already)."""
    if "relabeler" in results:
        relabeler = results["relabeler"]
        judge.load_state(relabeler.program.dump_state())
        if relabeler.kept == "uncompiled":
            return judge, "the uncompiled relabeler (compiling it in this run lowered its dev score)"
        return judge, "the relabeler compiled in this run"
    saved = Path(out_dir) / "relabeler.json" if out_dir is not None else None
    if saved is not None and saved.exists() and (Path(out_dir) / META).exists():
        kept = read_meta(out_dir).get("programs", {}).get("relabeler", {}).get("kept", "compiled")
        return load_state(judge, saved), f"the {kept} relabeler saved in {out_dir}"
    return judge, "the uncompiled relabeler"


def check_reflection_lm(config: CompileConfig, reflection_lm: Any) -> None:
    needs = [name for name in config.optimizers if get_optimizer(name).needs_reflection_lm]
    if needs and reflection_lm is None:
        raise ValueError(f"optimizer {needs[0]!r} needs a reflection LM (--reflection-lm MODEL, or `same` for the "
                         f"LM being compiled): a model that reads the metric's feedback and rewrites the "
                         f"instructions")


def class_cards(split: FewShotSplit, handle: LMHandle) -> list[ClassCard]:
    """Cards from the dataset's descriptions; the LM describes classes that have none."""
    given, seeds = split.dataset.descriptions, split.seeds_by_label()
    describer = ClassDescriber()
    cards = []
    for label in split.labels:
        description = given.get(label)
        if not description:
            with handle.context():
                others = [x for x in split.labels if x != label]
                description = describer(class_name=label, examples=seeds[label], other_classes=others).description
        cards.append(ClassCard(name=label, description=description, examples=seeds[label]))
    return cards


def build_selector(cards: list[ClassCard], config: CompileConfig) -> CandidateSelector:
    """Top-k candidates by sentence embedding, as the augment run offers them (no encoder when k covers all)."""
    from promptmix_dspy.method.candidates import SentenceEncoder

    encoder = SentenceEncoder(config.encoder) if config.top_k < len(cards) else None
    return CandidateSelector({c.name: c.examples for c in cards}, encoder, config.top_k)


def evaluate_program(program: dspy.Module, devset: list[dspy.Example], metric: Any, handle: LMHandle,
                     num_threads: int = 4, desc: str = "dev") -> float:
    """Mean metric over ``devset`` in [0, 1], with a progress bar. An example whose call fails scores 0; when
    half of them fail, DSPy raises (a wrong endpoint or key should stop the run, not read as a score of 0)."""
    if not devset:
        raise ValueError("cannot score a program on an empty dev set")
    logger.info("scoring %s on %d dev examples", desc, len(devset))
    evaluate = dspy.Evaluate(devset=devset, metric=metric, num_threads=num_threads, display_progress=True,
                             max_errors=len(devset) // 2 + 1, provide_traceback=False)
    with handle.context():
        try:
            score = round(evaluate(program).score / 100.0, 4)
        except Exception as exc:  # DSPy's executor raises a bare Exception once max_errors is reached
            check_spending(handle)
            raise RuntimeError(f"{len(devset) // 2 + 1} of {len(devset)} dev calls to {handle.model} failed (the "
                               f"errors are logged above): check --lm, --api-base and the API key") from exc
    check_spending(handle)
    return score


def _compile(task: Task, config: CompileConfig, handle: LMHandle, reflection_lm: Any,
             judge: str | None = None) -> CompileResult:
    """Score the uncompiled program, compile it with each optimizer asked for, keep the best on dev (the
    uncompiled one when every compiled program scores lower, unless ``keep_worse``)."""
    logger.info("compiling the %s with %s (dev: %s, %d examples)", task.name, ", ".join(config.optimizers),
                task.dev_mode, len(task.devset))
    start, threads = time.monotonic(), handle.in_flight(config.num_threads)
    before = evaluate_program(task.student, task.devset, task.metric, handle, threads, f"{task.name}, uncompiled")
    tried, best = {}, None
    failures = {}
    for name in config.optimizers:
        try:
            program = _optimize(name, task, config, handle, reflection_lm, threads)
        except RunStopped:
            raise
        except Exception as exc:  # an optimizer's own LM calls broke (a proposal cut off): the others still count
            failures[name] = redact(f"{type(exc).__name__}: {exc}")[:300]
            logger.warning("%s: %s failed (%s); going on without it", task.name, name, failures[name])
            continue
        tried[name] = evaluate_program(program, task.devset, task.metric, handle, threads, f"{task.name}, {name}")
        logger.info("%s: dev %s %.3f -> %.3f with %s", task.name, task.metric_name, before, tried[name], name)
        if best is None or tried[name] > tried[best[0]]:
            best = (name, program)
    if best is None:
        logger.warning("%s: every optimizer failed (%s): keeping the uncompiled program", task.name, failures)
        best = (config.optimizers[0], task.student.deepcopy())
        tried[config.optimizers[0]] = before
    name, compiled = best
    after, kept = tried[name], "compiled"
    if after < before and not config.keep_worse:
        logger.warning("%s: compiling lowered the dev score (%.3f -> %.3f): keeping the uncompiled program "
                       "(--keep-worse keeps the compiled one)", task.name, before, after)
        compiled, kept = task.student.deepcopy(), "uncompiled"
    settings = get_optimizer(name).resolve(config.settings_for(name), len(task.devset), threads, config.seed)
    return CompileResult(task.name, compiled, name, settings, task.dev_mode, len(task.devset), task.metric_name,
                         before, after, round(time.monotonic() - start, 1), config.compact_demos, judge, kept, tried,
                         failures)


def _optimize(name: str, task: Task, config: CompileConfig, handle: LMHandle, reflection_lm: Any,
              threads: int) -> dspy.Module:
    with handle.context():
        try:
            compiled = get_optimizer(name).run(task.student.deepcopy(), task.metric, trainset=task.trainset,
                                               valset=task.devset, labeled=task.labeled,
                                               settings=config.settings_for(name), num_threads=threads,
                                               seed=config.seed, reflection_lm=reflection_lm)
        finally:
            check_spending(handle)
    _tidy_demos(compiled, config.compact_demos)
    return compiled


def check_spending(handle: LMHandle) -> None:
    """RunStopped once --max-cost is reached (the LM refuses calls from then on; see PromptMixLM)."""
    check = getattr(handle.lm, "_check_spending", None)
    if check is not None:
        check()


def _tidy_demos(program: dspy.Module, compact: bool) -> None:
    """Drop demos with no output (optimizers may add raw training examples; the adapter would skip them) and,
    if ``compact``, the class cards inside demos."""
    for predictor in program.predictors():
        outputs = predictor.signature.output_fields
        kept = [d for d in predictor.demos if any(d.get(k) is not None for k in outputs)]
        predictor.demos = [_without_cards(d) for d in kept] if compact else kept


def _without_cards(demo: Any) -> Any:
    demo = demo.copy()
    for key in CARD_FIELDS:
        if key in demo:
            del demo[key]
    return demo




# ----------------------------------------------------------------------------------------------------------
# saving and loading


def save_compiled(out_dir: str | Path, results: dict[str, CompileResult], split: FewShotSplit, handle: LMHandle,
                  reflection_lm: Any = None, config: CompileConfig | None = None) -> Path:
    """Write each program's JSON state and merge its record into meta.json (refusing other labels)."""
    out = Path(out_dir)
    meta = _merged_meta(out, split)
    out.mkdir(parents=True, exist_ok=True)
    for name, result in results.items():
        result.program.save(str(out / f"{name}.json"))
        reflection = {"reflection_lm": getattr(reflection_lm, "model", None)} if reflection_lm else {}
        meta["programs"][name] = {**result.record(), **reflection, "lm": handle.describe(), "date": now_iso(),
                                  **({"config": _config_record(config)} if config else {})}
    meta.update({"dspy_version": dspy.__version__, "versions": versions(), "updated": now_iso()})
    atomic_write_json(out / META, meta)
    logger.info("wrote %s to %s", ", ".join(f"{n}.json" for n in results), out)
    return out


def _config_record(config: CompileConfig) -> dict[str, Any]:
    """The compile settings besides the optimizer's own (those are in each program's "settings")."""
    return {f.name: getattr(config, f.name) for f in fields(config) if f.name not in ("settings", "program")}


def _merged_meta(out: Path, split: FewShotSplit) -> dict[str, Any]:
    fresh = {"format": 2, "dataset": split.dataset.name, "labels": list(split.labels), "shots": split.k,
             "seed": split.seed, "dev_per_class": len(split.dev) // max(1, len(split.labels)),
             "rows_sha256": labelled_rows_sha256(split), "data": split.dataset.identity()["sha256"],
             "protocol": PROTOCOL_VERSION, "programs": {}}
    if not (out / META).exists():
        return fresh
    old = read_meta(out)
    check_labels(old["labels"], list(split.labels), out)
    if old.get("rows_sha256") and old["rows_sha256"] != fresh["rows_sha256"]:
        raise ValueError(f"{out} holds programs compiled on other labelled rows (seed {old.get('seed')}, dev "
                         f"{old.get('dev_per_class')} per class) than this compile's (seed {split.seed}, dev "
                         f"{fresh['dev_per_class']} per class): use another --out")
    return {**old, **{k: v for k, v in fresh.items() if k != "programs"}, "programs": old.get("programs", {})}
