"""Compile the relabeler and the generator with a DSPy optimizer; save and load them as JSON + meta.json.

    from promptmix_dspy.compile.optimize import CompileConfig, compile_programs
    with open_lm(LMSettings()) as handle:
        results = compile_programs(load_dataset("trec6"), "programs/trec6", CompileConfig(optimizer="bootstrap"),
                                   handle)
    results["relabeler"].dev_before, results["relabeler"].dev_after

A compiled folder holds ``relabeler.json`` and/or ``generator.json`` (DSPy's JSON state: demos and
instructions, never pickle) and ``meta.json`` (labels, LM, optimizer and settings, dev mode, dev score before
and after, versions, date). ``load_compiled`` puts that state into a PromptMix built for the same labels.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import dspy

from promptmix_dspy.compile.optimizers import get_optimizer
from promptmix_dspy.compile.tasks import Task, generator_task, relabeler_task
from promptmix_dspy.data.fewshot import FewShotSplit, few_shot_split
from promptmix_dspy.data.types import Dataset
from promptmix_dspy.llm.settings import LMHandle
from promptmix_dspy.method.candidates import CandidateSelector
from promptmix_dspy.method.modules import ClassDescriber, Relabeler
from promptmix_dspy.method.programs import META, PROGRAMS, check_labels, load_state, read_meta
from promptmix_dspy.method.signatures import ClassCard
from promptmix_dspy.store.files import atomic_write_json, now_iso, versions

__all__ = ["CompileConfig", "CompileResult", "build_selector", "check_reflection_lm", "class_cards",
           "compile_programs", "evaluate_program", "save_compiled"]

logger = logging.getLogger(__name__)
CARD_FIELDS = ("candidate_classes", "class_cards")
_SECRET_HINTS = ("key", "token", "secret", "password")


@dataclass
class CompileConfig:
    """What to compile and how. ``dev_per_class=0`` scores the relabeler leave-one-out over the seeds.

    ``compact_demos`` drops the class cards from every demo: the prompt shows the cards already, and a demo
    that repeats them costs hundreds of tokens (more than a small local model's context holds with 4 demos).
    A compiled program that scores lower on dev than the uncompiled one is not kept unless ``keep_worse``.
    """

    program: str = "all"
    optimizer: str = "bootstrap"
    settings: dict[str, Any] = field(default_factory=dict)
    shots: int = 2
    seed: int = 0
    dev_per_class: int = 0
    top_k: int = 5
    encoder: str | None = None
    generator_calls: int = 2
    generator_dev_calls: int = 1
    texts_per_call: int = 3
    group_size: int = 4
    num_threads: int = 4
    compact_demos: bool = True
    keep_worse: bool = False

    def __post_init__(self) -> None:
        if self.program not in (*PROGRAMS, "all"):
            raise ValueError(f"program must be one of {[*PROGRAMS, 'all']}, got {self.program!r}")
        get_optimizer(self.optimizer).resolve(self.settings, valset_size=1)  # unknown settings fail now
        for name in ("shots", "top_k", "generator_calls", "generator_dev_calls", "texts_per_call", "num_threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.dev_per_class < 0:
            raise ValueError(f"dev_per_class must be >= 0, got {self.dev_per_class}")

    @property
    def programs(self) -> tuple[str, ...]:
        return PROGRAMS if self.program == "all" else (self.program,)


@dataclass
class CompileResult:
    name: str
    program: dspy.Module
    optimizer: str
    settings: dict[str, Any]
    dev_mode: str
    dev_size: int
    metric: str
    dev_before: float
    dev_after: float
    seconds: float
    compact_demos: bool = True
    judge: str | None = None  # the generator's metric: which relabeler judged its texts
    kept: str = "compiled"  # or "uncompiled": compiling lowered the dev score, so the original was kept

    def record(self) -> dict[str, Any]:
        """What meta.json says about this program (no module, no secrets)."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("program", "settings")}
        out = {k: v for k, v in out.items() if v is not None}
        out["demos"] = {name: len(p.demos) for name, p in self.program.named_predictors()}
        return {**out, "file": f"{self.name}.json", "settings": _public(self.settings)}


def compile_programs(dataset: Dataset, out_dir: str | Path | None, config: CompileConfig, handle: LMHandle,
                     reflection_lm: Any = None) -> dict[str, CompileResult]:
    """Compile the relabeler and/or the generator; save them to ``out_dir`` when given.

    The generator is judged by a frozen relabeler: the one compiled in this run, else a compiled relabeler
    already in ``out_dir``, else the uncompiled one (meta.json says which).
    """
    check_reflection_lm(config, reflection_lm)
    if out_dir is not None and (Path(out_dir) / META).exists():  # fail before the LM work, not after
        check_labels(read_meta(out_dir).get("labels", []), dataset.labels, Path(out_dir))
    split = few_shot_split(dataset, config.shots, config.seed, config.dev_per_class)
    cards = class_cards(split, handle)
    task_text = dataset.task
    selector = build_selector(cards, config)
    results: dict[str, CompileResult] = {}
    if "relabeler" in config.programs:
        results["relabeler"] = _compile(relabeler_task(split, cards, selector, task_text), config, handle, reflection_lm)
    if "generator" in config.programs:
        judge, judged_by = _judge(Relabeler(cards, selector, task=task_text), results, out_dir)
        task = generator_task(split, cards, judge, calls_per_class=config.generator_calls,
                              dev_calls_per_class=config.generator_dev_calls,
                              texts_per_call=config.texts_per_call, group_size=config.group_size, task=task_text)
        results["generator"] = _compile(task, config, handle, reflection_lm, judge=judged_by)
    if out_dir is not None:
        save_compiled(out_dir, results, split, handle, reflection_lm, config)
    return results


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
    if get_optimizer(config.optimizer).needs_reflection_lm and reflection_lm is None:
        raise ValueError(f"optimizer {config.optimizer!r} needs a reflection LM (--reflection-lm MODEL): a "
                         f"strong model that reads the metric's feedback and rewrites the instructions")


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
                     num_threads: int = 4) -> float:
    """Mean metric over ``devset`` in [0, 1]. An example whose call fails scores 0; when half of them fail,
    DSPy raises (a wrong endpoint or key should stop the run, not read as a score of 0)."""
    if not devset:
        raise ValueError("cannot score a program on an empty dev set")
    evaluate = dspy.Evaluate(devset=devset, metric=metric, num_threads=num_threads, display_progress=False,
                             max_errors=len(devset) // 2 + 1, provide_traceback=False)
    with handle.context():
        try:
            return round(evaluate(program).score / 100.0, 4)
        except Exception as exc:  # DSPy's executor raises a bare Exception once max_errors is reached
            raise RuntimeError(f"{len(devset) // 2 + 1} of {len(devset)} dev calls to {handle.model} failed (the "
                               f"errors are logged above): check --lm, --api-base and the API key") from exc


def _compile(task: Task, config: CompileConfig, handle: LMHandle, reflection_lm: Any,
             judge: str | None = None) -> CompileResult:
    spec = get_optimizer(config.optimizer)
    logger.info("compiling the %s with %s (dev: %s, %d examples)", task.name, config.optimizer, task.dev_mode,
                len(task.devset))
    start = time.monotonic()
    threads = handle.in_flight(config.num_threads)
    before = evaluate_program(task.student, task.devset, task.metric, handle, threads)
    with handle.context():
        compiled = spec.run(task.student.deepcopy(), task.metric, trainset=task.trainset, valset=task.devset,
                            labeled=task.labeled, settings=config.settings, num_threads=threads,
                            seed=config.seed, reflection_lm=reflection_lm)
    _tidy_demos(compiled, config.compact_demos)
    after = evaluate_program(compiled, task.devset, task.metric, handle, threads)
    logger.info("%s: dev %s %.3f -> %.3f", task.name, task.metric_name, before, after)
    kept = "compiled"
    if after < before and not config.keep_worse:
        logger.warning("%s: compiling lowered the dev score (%.3f -> %.3f): keeping the uncompiled program "
                       "(--keep-worse keeps the compiled one)", task.name, before, after)
        compiled, kept = task.student.deepcopy(), "uncompiled"
    settings = spec.resolve(config.settings, len(task.devset), threads, config.seed)
    return CompileResult(task.name, compiled, config.optimizer, settings, task.dev_mode, len(task.devset),
                         task.metric_name, before, after, round(time.monotonic() - start, 1), config.compact_demos,
                         judge, kept)


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


def _public(settings: dict[str, Any]) -> dict[str, Any]:
    """Settings safe to write: no objects, nothing that looks like a credential."""
    out = {}
    for key, value in settings.items():
        if any(hint in key.lower() for hint in _SECRET_HINTS):
            out[key] = "<not saved>"
        elif isinstance(value, (str, int, float, bool, type(None), list, dict)):
            out[key] = value
        else:
            out[key] = repr(type(value).__name__)
    return out


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
    fresh = {"format": 1, "dataset": split.dataset.name, "labels": list(split.labels), "shots": split.k,
             "seed": split.seed, "programs": {}}
    if not (out / META).exists():
        return fresh
    old = read_meta(out)
    check_labels(old["labels"], list(split.labels), out)
    return {**old, **{k: v for k, v in fresh.items() if k != "programs"}, "programs": old.get("programs", {})}
