"""Beyond PromptMix: a second round of generation aimed at where the student is confused (after Zhang et al.,
"Clear Up Confusion", which fed a student's confusions back into generation).

    round 1  PromptMix, as always (the run's generation) -> a student trained on seeds + round 1
    probe    fresh mix calls for every class (new sample indices), relabeled by the LLM: a pool of texts labelled
             by the LLM only, never by test labels or extra human labels; probe_per_class texts per class
             (default per_class). A third of it (every third text) is held out: it measures the confusion
             before and after round 2 and is never trained on.
    pairs    (LLM label A, round-1 student's prediction B != A) over the probe pool: the pairs with the highest
             disagreement rate (share of A's probe texts the student puts in B) get the round-2 budget
    round 2  mix calls with majority A (the true class) and minority B (the class the student confuses it with),
             as many calls as round 1 planned (per_class texts per class), split over the pairs by their
             disagreement counts; relabeled
    final    seeds + round 1 + the probe texts not held out + round 2 -> the student

Everything is journaled in one folder (generated.jsonl, relabeled.jsonl, student_round1/, pairs.json,
confusion.json, confusion.png), so a killed run resumes without repeating a finished call or training.
"""

from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from promptmix_dspy.data.fewshot import FewShotSplit
from promptmix_dspy.data.types import Example
from promptmix_dspy.llm.runner import Budget
from promptmix_dspy.llm.settings import LMHandle
from promptmix_dspy.method.cleanup import is_near_copy, normalize
from promptmix_dspy.method.mixing import MixCall, mix_plan, sample_majority_share
from promptmix_dspy.method.modules import PromptMix
from promptmix_dspy.method.signatures import ClassCard
from promptmix_dspy.pipeline.config import AugmentConfig
from promptmix_dspy.pipeline.decontaminate import drop_test_texts
from promptmix_dspy.pipeline.generate import generation_rows, run_calls
from promptmix_dspy.pipeline.relabel import label_texts
from promptmix_dspy.store.files import (Journal, atomic_write_json, atomic_write_jsonl, journal_usage, read_journal,
                                        read_json)

__all__ = ["PROBE_START", "ROUND1_MIN_STEPS", "ROUND2_START", "FeedbackResult", "choose_pairs", "confusion_after",
           "confusion_counts", "disagreement", "plan_round2", "probe_size", "record_after", "run_for_cell", "second_round",
           "second_round_for_run"]

logger = logging.getLogger(__name__)
PROBE_START, ROUND2_START = 100, 200  # sample indices of the probe and round-2 calls: fresh draws, never round 1's
HELD_OUT_EVERY = 3
Trainer = Callable[[list[Example], Path], Path]  # (rows, folder) -> trained student folder
Predictor = Callable[[Path, list[str]], list[str]]


@dataclass
class FeedbackResult:
    rows: list[dict]  # probe (not held out) + round 2, relabeled: what joins round 1 in the training set
    pairs: list[dict]
    confusion_before: dict  # the round-1 student on the held-out third of the probe pool
    held_out: list[dict]


def second_round(program: PromptMix, split: FewShotSplit, round1: list[dict], config: AugmentConfig,
                 handle: LMHandle, out: Path, budget: Budget, train: Trainer, predict: Predictor) -> FeedbackResult:
    """Run the probe, the pairs and round 2 (module docstring) in ``out``; resumes from its journals."""
    out.mkdir(parents=True, exist_ok=True)
    _check_probe_size(out, probe_size(config))
    journal = Journal(out / "generated.jsonl", key="call_id")
    probe = _probe(program, split, config, handle, journal, out, budget, round1)
    held_out, probe_train = probe[::HELD_OUT_EVERY], [r for i, r in enumerate(probe) if i % HELD_OUT_EVERY]
    student = _round1_student(split, round1, out, train)
    pairs, confusion = _pairs(out, student, probe, held_out, split.labels, predict)
    calls = plan_round2(pairs, program, split.labels, config,
                        n_calls=_calls_for(config.per_class, split.labels, config))
    run_calls(program, calls, config, handle, journal, budget, "generate (round 2)", round_no=2)
    round2 = generation_rows(split.labels, calls, journal, per_class=10**9)[0]
    round2 = _new(round2, [r["text"] for r in round1 + probe] + [e.text for e in split.seeds])
    labelled = label_texts(program.relabeler, [r["text"] for r in round2], out / "relabeled.jsonl", config, handle,
                           budget, "relabel (round 2)")
    rows = probe_train + [_final(r, labelled[r["text"]], 2, handle) for r in round2 if labelled[r["text"]]]
    rows, _, _ = drop_test_texts(rows, split.dataset, None)
    atomic_write_jsonl(out / "rows.jsonl", rows)
    return FeedbackResult(rows, pairs, confusion, held_out)


def _check_probe_size(out: Path, size: int) -> None:
    """A resumed second round must keep its probe size: its pairs were chosen on that pool."""
    path = out / "probe.json"
    if path.exists():
        made = read_json(path).get("probe_per_class")
        if made != size:
            raise ValueError(f"{out} holds a second round made with a probe of {made} texts per class, not {size} "
                             f"(--probe-per-class): use another --out, or delete {out} to redo the second round")
    else:
        atomic_write_json(path, {"probe_per_class": size})


def _calls_for(per_class: int, labels: list[str], config: AugmentConfig) -> int:
    return math.ceil(per_class / config.texts_per_call) * len(labels)


def probe_size(config: AugmentConfig) -> int:
    """The probe pool's texts per class: ``probe_per_class``, else ``per_class``."""
    return config.probe_per_class or config.per_class


def _probe(program: PromptMix, split: FewShotSplit, config: AugmentConfig, handle: LMHandle, journal: Journal,
           out: Path, budget: Budget, round1: list[dict]) -> list[dict]:
    """The probe pool: ``probe_size`` fresh texts per class, relabeled by the LLM (never a test label)."""
    calls = [MixCall(**{**c.to_dict(), "call_id": f"probe:{c.call_id}"})
             for c in mix_plan(split.labels, probe_size(config), config.seed, texts_per_call=config.texts_per_call,
                               group_size=config.group_size, start_index=PROBE_START)]
    run_calls(program, calls, config, handle, journal, budget, "generate (probe)", round_no=1)
    rows = generation_rows(split.labels, calls, journal, probe_size(config))[0]
    rows = _new(rows, [r["text"] for r in round1] + [e.text for e in split.seeds])
    labelled = label_texts(program.relabeler, [r["text"] for r in rows], out / "relabeled.jsonl", config, handle,
                           budget, "relabel (probe)")
    return [_final(r, labelled[r["text"]], 1, handle) for r in rows if labelled[r["text"]]]


def _new(rows: list[dict], before: list[str]) -> list[dict]:
    """Rows whose text neither repeats nor nearly repeats a text kept before (seeds, round 1, the probe)."""
    keys = {normalize(t) for t in before}
    return [r for r in rows if normalize(r["text"]) not in keys and not is_near_copy(r["text"], before)]


def _final(row: dict, label: str | None, round_no: int, handle: LMHandle) -> dict:
    return {**row, "label": label, "label_raw": label, "relabeled": label != row["generated_for"],
            "lm": handle.model, "round": round_no}


def _round1_student(split: FewShotSplit, round1: list[dict], out: Path, train: Trainer) -> Path:
    folder, marker = out / "student_round1", out / "student_round1.done"
    if not marker.exists():
        rows = list(split.seeds) + [Example(r["text"], r["label"]) for r in round1]
        train(rows, folder)
        marker.write_text("trained\n", encoding="utf-8")
    return folder


def _pairs(out: Path, student: Path, probe: list[dict], held_out: list[dict], labels: list[str],
           predict: Predictor) -> tuple[list[dict], dict]:
    """The pairs, from the round-1 student's confusion over the probe texts that are not held out (choosing on the
    held-out third too would bias its before -> after toward improvement); and its confusion on the held-out third
    (the 'before' of the before/after picture)."""
    path = out / "pairs.json"
    if path.exists():
        saved = read_json(path)
        return saved["pairs"], saved["held_out_confusion"]
    predicted = predict(student, [r["text"] for r in probe])
    chosen_on = [i for i in range(len(probe)) if i % HELD_OUT_EVERY]
    confusion = confusion_counts([probe[i]["label"] for i in chosen_on], [predicted[i] for i in chosen_on], labels)
    pairs = choose_pairs(confusion, labels)
    held_out_confusion = confusion_counts([r["label"] for r in probe[::HELD_OUT_EVERY]],
                                          predicted[::HELD_OUT_EVERY], labels)
    atomic_write_json(path, {"pairs": pairs, "confusion": confusion, "held_out_confusion": held_out_confusion,
                             "probe_size": len(probe), "held_out_size": len(held_out)})
    logger.info("round 2 goes to %s", ", ".join(f"{p['true']}->{p['predicted']} ({p['rate']:.0%})" for p in pairs))
    return pairs, held_out_confusion  # the same 'before' as a resumed run reads back


def confusion_counts(gold: Sequence[str], predicted: Sequence[str], labels: Sequence[str]) -> dict:
    counts = {a: {b: 0 for b in labels} for a in labels}
    for g, p in zip(gold, predicted):
        counts[g][p] += 1
    return counts


def choose_pairs(confusion: dict, labels: Sequence[str], max_pairs: int | None = None) -> list[dict]:
    """The (true, predicted) pairs the student gets wrong, highest disagreement rate first (then count, then
    label order): at most as many pairs as the dataset has classes by default (a class may be the true side of
    several pairs)."""
    order = {label: i for i, label in enumerate(labels)}
    pairs = []
    for true, row in confusion.items():
        total = sum(row.values())
        for predicted, n in row.items():
            if predicted != true and n:
                pairs.append({"true": true, "predicted": predicted, "count": n, "of": total,
                              "rate": round(n / total, 4)})
    pairs.sort(key=lambda p: (-p["rate"], -p["count"], order[p["true"]], order[p["predicted"]]))
    return pairs[: max_pairs or len(labels)]


def plan_round2(pairs: list[dict], program: PromptMix, labels: list[str], config: AugmentConfig,
                n_calls: int) -> list[MixCall]:
    """``n_calls`` mix calls split over the pairs by their disagreement counts (largest remainder), each with
    majority = the true class, minority = the class the student confuses it with; without a confused pair,
    ordinary fresh mix calls. Shares and groups are drawn as in round 1, seeded by the call."""
    if not pairs:
        return [MixCall(**{**c.to_dict(), "call_id": f"r2:{c.call_id}"})
                for c in mix_plan(labels, config.per_class, config.seed, texts_per_call=config.texts_per_call,
                                  group_size=config.group_size, start_index=ROUND2_START)]
    shares = _allocate([p["count"] for p in pairs], n_calls)
    calls = []
    for pair, n in zip(pairs, shares):
        for j in range(n):
            calls.append(_targeted(pair["true"], pair["predicted"], j, labels, config))
    return calls


def _allocate(weights: list[int], total: int) -> list[int]:
    exact = [total * w / sum(weights) for w in weights]
    out = [math.floor(x) for x in exact]
    for i in sorted(range(len(weights)), key=lambda i: exact[i] - out[i], reverse=True)[: total - sum(out)]:
        out[i] += 1
    return out


def _targeted(true: str, confused: str, j: int, labels: list[str], config: AugmentConfig) -> MixCall:
    rng = random.Random(f"{config.seed}:r2:{true}:{confused}:{j}")
    share = config.fixed_share if config.fixed_share is not None else sample_majority_share(rng)
    others = [label for label in labels if label not in (true, confused)]
    group = (true, confused, *rng.sample(others, min(len(others), config.group_size - 2)))
    return MixCall(call_id=f"r2:{true}>{confused}#{j}", majority=true, minority=confused if share < 1.0 else None,
                   majority_share=share, group=group, num_texts=config.texts_per_call,
                   sample_index=ROUND2_START + j)


def confusion_after(held_out: list[dict], student: Path, labels: list[str], predict: Predictor) -> dict:
    """The final student's confusion on the held-out third of the probe pool (never trained on)."""
    return confusion_counts([r["label"] for r in held_out], predict(student, [r["text"] for r in held_out]), labels)


def disagreement(confusion: dict, pairs: list[dict]) -> list[dict]:
    """The disagreement rate of each chosen pair in ``confusion``."""
    out = []
    for p in pairs:
        row = confusion.get(p["true"], {})
        total = sum(row.values())
        out.append({**p, "rate": round(row.get(p["predicted"], 0) / total, 4) if total else None})
    return out



# ----------------------------------------------------------------------------------------------------------
# one a2fb cell of the grid


def run_for_cell(cell: Any, gen_dir: Path, out: Path, handle: LMHandle, budget: Budget) -> FeedbackResult:
    """The second round of an experiment cell whose round 1 is the generation in ``gen_dir``."""
    from promptmix_dspy.pipeline.program import build_program
    from promptmix_dspy.student.model import predict
    from promptmix_dspy.student.train import train_student

    config = cell.spec.augment_config("mix")
    descriptions, seeds = read_json(gen_dir / "descriptions.json"), cell.split.seeds_by_label()
    cards = [ClassCard(name=label, description=descriptions[label], examples=seeds[label])
             for label in cell.split.labels]
    task = read_json(gen_dir / "task.json")["task"]
    program = build_program(cards, config, cell.spec.programs_dir, task)

    def train(rows: list[Example], folder: Path) -> Path:
        return train_student(rows, cell.split.labels, cell.spec.train_config(), folder,
                             provenance={"method": "a2fb round 1", "dataset": cell.spec.dataset})

    return second_round(program, cell.split, cell.generated, config, handle, out, budget, train,
                        lambda folder, texts: predict(folder, texts))


ROUND1_MIN_STEPS = 300  # the probe student must learn something: 5 epochs of ~70 rows are ~45 steps


def second_round_for_run(dataset: Any, run_dir: Path, config: AugmentConfig, handle: LMHandle,
                         programs: str | Path | None = None, student: str | None = None) -> tuple[Path, FeedbackResult]:
    """``promptmix augment --rounds 2``: the second round of a finished augment run, in RUN/round2; writes
    RUN/augmented_2rounds.jsonl (round 1 + the probe texts not held out + round 2) and returns its path."""
    from promptmix_dspy.data.fewshot import few_shot_split
    from promptmix_dspy.pipeline.program import build_program
    from promptmix_dspy.student.model import predict
    from promptmix_dspy.student.train import TrainConfig, train_student

    split = few_shot_split(dataset, config.shots, config.seed, config.dev_per_class)
    descriptions, seeds = read_json(run_dir / "descriptions.json"), split.seeds_by_label()
    cards = [ClassCard(name=label, description=descriptions[label], examples=seeds[label]) for label in split.labels]
    program = build_program(cards, config, programs, read_json(run_dir / "task.json")["task"])
    round1 = read_journal(run_dir / "augmented.jsonl")
    train_config = TrainConfig.for_dataset(dataset.name, min_steps=ROUND1_MIN_STEPS, seed=config.seed,
                                           **({"student": student} if student else {}))

    def train(rows: list[Example], folder: Path) -> Path:
        return train_student(rows, split.labels, train_config, folder,
                             provenance={"method": "round-1 student of augment --rounds 2", "dataset": dataset.name})

    spent = journal_usage([run_dir / "generated.jsonl", run_dir / "relabeled.jsonl"])["cost_usd"] or 0.0
    result = second_round(program, split, round1, config, handle, run_dir / "round2",
                          Budget(config.max_errors, config.max_cost, spent_before=spent), train,
                          lambda folder, texts: predict(folder, texts))
    path = run_dir / "augmented_2rounds.jsonl"
    atomic_write_jsonl(path, round1 + result.rows)
    return path, result


def record_after(result: FeedbackResult, student: Path, labels: list[str], out: Path) -> dict:
    """confusion.json and confusion.png: the held-out probe texts before (round-1 student) and after."""
    from promptmix_dspy.experiments.plots import plot_confusion_pair
    from promptmix_dspy.student.model import predict

    after = confusion_after(result.held_out, student, labels, lambda folder, texts: predict(folder, texts))
    summary = {"pairs": result.pairs, "before": result.confusion_before, "after": after,
               "pair_rates_before": disagreement(result.confusion_before, result.pairs),
               "pair_rates_after": disagreement(after, result.pairs), "held_out": len(result.held_out)}
    atomic_write_json(out / "confusion.json", summary)
    plot_confusion_pair(result.confusion_before, after, labels, result.pairs, out / "confusion.png")
    return summary
