"""How well the relabeler labels, raw and calibrated, and what one relabel call costs.

On up to ``--texts`` labelled *train* texts per dataset outside seed 0's 2-shot seeds (seeded, stratified; never
test: twitter_complaints has 50 train tweets, so 46), the pipeline's own relabel step (``answer_texts`` with the
run's defaults: top-5 candidates, one text per call, temperature 0) labels every text on the embedded server;
then each calibration (method/calibration.py) is applied over those texts (batch calibration treats them as the
unlabelled batch; content-free makes its own calls). Reported per dataset, prompt layout and calibration:
accuracy and macro-F1 (scikit-learn), each class's share of the answers, completion tokens and seconds per call
(the server's own timings), prompt tokens per call at face value and as the server evaluated them.

    python benchmarks/relabel_quality.py --out evals/results/relabel_quality.md \
        [--datasets trec6,subj,twitter_complaints] [--layouts shared,candidates] [--texts 120]

Also ``--json PATH`` for the raw figures (evals/results/relabel_quality.json).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

CALIBRATIONS = ("none", "batch", "content-free")


def sample(dataset, n: int, seed_texts: set[str], seed: int = 1) -> list:
    """Up to n train texts outside the seeds, as even over classes as the data allows; seeded."""
    by: dict[str, list] = {}
    for ex in dataset.train:
        if ex.text not in seed_texts:
            by.setdefault(ex.label, []).append(ex)
    rng, out = random.Random(seed), []
    per = max(1, n // len(dataset.labels))
    for label in dataset.labels:
        out += rng.sample(by.get(label, []), min(per, len(by.get(label, []))))
    rng.shuffle(out)
    return out


def _scores(gold: list[str], pred: list[str], labels: list[str]) -> dict:
    from sklearn.metrics import accuracy_score, f1_score

    return {"accuracy": accuracy_score(gold, pred),
            "macro_f1": f1_score(gold, pred, labels=sorted(set(gold) | set(pred)), average="macro", zero_division=0),
            "shares": {c: round(pred.count(c) / len(pred), 3) for c in labels}}


def _written(ds, split, config, handle, folder: Path):
    from promptmix_dspy.llm.runner import Budget
    from promptmix_dspy.pipeline.config import AugmentConfig
    from promptmix_dspy.pipeline.describe import describe_classes, describe_task
    from promptmix_dspy.store.files import read_journal

    folder.mkdir(parents=True, exist_ok=True)
    always = AugmentConfig(**{**vars(config), "describe": "always"})
    ds.task = None  # the task sentence is written too
    task = describe_task(split, always, handle, folder, Budget())
    cards = describe_classes(split, always, handle, folder, Budget(), task)
    calls = sum((r.get("usage") or {}).get("attempts", 0) for r in read_journal(folder / "descriptions.jsonl"))
    calls += sum(1 for p in folder.glob("describe_check*.jsonl") for _ in read_journal(p))
    return cards, task, calls


def measure(name: str, layout: str, texts: int, data_dir: str, handle, root: Path,
            calibrations: tuple[str, ...] = CALIBRATIONS, written: bool = False) -> list[dict]:
    from promptmix_dspy.data.datasets import load_dataset
    from promptmix_dspy.data.fewshot import few_shot_split
    from promptmix_dspy.llm.runner import Budget
    from promptmix_dspy.pipeline.config import AugmentConfig
    from promptmix_dspy.pipeline.program import build_program
    from promptmix_dspy.pipeline.relabel import answer_texts, calibrate
    from promptmix_dspy.method.signatures import ClassCard

    ds = load_dataset(name, data_dir=data_dir)
    split = few_shot_split(ds, 2, 0)
    pool = sample(ds, texts, {e.text for e in split.seeds})
    config = AugmentConfig(layout=layout, num_threads=2)
    if written:  # the LM writes every description and the task from the seeds (the pipeline's describe step)
        cards, task, describe_calls = _written(ds, split, config, handle, root / f"describe-{name}")
    else:
        cards = [ClassCard(name=label, description=ds.descriptions[label], examples=ex)
                 for label, ex in split.seeds_by_label().items()]
        task, describe_calls = ds.task, 0
    program = build_program(cards, config, None, task)
    # its own journal: the relabel step resumes from a journal, and the written descriptions' answers must not be
    # read back from the given ones' run (nor the other way round)
    journal = root / f"{name}-{layout}-{'written' if written else 'given'}.jsonl"
    started, history_start = time.monotonic(), len(handle.lm.history)
    answers = answer_texts(program.relabeler, [e.text for e in pool], journal, config, handle, Budget(), "relabel")
    seconds = time.monotonic() - started
    calls = handle.lm.history[history_start:]
    cost = _call_cost(calls, len(pool), seconds)
    gold = [e.label for e in pool]
    rows = []
    for method in calibrations:
        found = {t: a for t, a in answers.items() if a is not None}
        calibrated, record = calibrate(found, method, program.relabeler, journal, config, handle, Budget())
        pred = [max(calibrated[e.text], key=calibrated[e.text].get) if e.text in calibrated else
                (answers[e.text].label if answers[e.text] else "(none)") for e in pool]
        rows.append({"dataset": name, "layout": layout, "calibration": method, "texts": len(pool),
                     "descriptions": f"written ({describe_calls} calls)" if written else "given",
                     "describe_calls": describe_calls,
                     "cards": {c.name: c.description for c in cards} if written else None,
                     "task": task if written else None,
                     "probabilities": record.get("probabilities"), **_scores(gold, pred, ds.labels), **cost})
    return rows


def _call_cost(calls: list[dict], n: int, seconds: float) -> dict:
    """Per call: face-value prompt tokens, the prompt tokens the server evaluated (its timings), completion tokens,
    and wall seconds per text of the whole stage (2 in flight)."""
    def timings(entry: dict) -> dict:
        response = entry.get("response")
        return (getattr(response, "timings", None) or (response or {}).get("timings") or {}) if response else {}
    usage = [c.get("usage") or {} for c in calls]
    evaluated = [timings(c).get("prompt_n") for c in calls]
    k = max(1, len(calls))
    return {"calls": len(calls), "prompt_tokens": sum(u.get("prompt_tokens", 0) for u in usage) / k,
            "prompt_evaluated": (sum(e for e in evaluated if e is not None) / k) if any(e is not None
                                                                                      for e in evaluated) else None,
            "completion_tokens": sum(u.get("completion_tokens", 0) for u in usage) / k,
            "seconds_per_text": seconds / max(1, n)}


def _shares(shares: dict[str, float]) -> str:
    """Each class's share of the answers; with many classes, the largest three and how many got none."""
    if len(shares) <= 6:
        return ", ".join(f"{k} {100 * v:.0f}%" for k, v in shares.items())
    top = sorted(shares.items(), key=lambda kv: -kv[1])[:3]
    return ", ".join(f"{k} {100 * v:.0f}%" for k, v in top) + f"; {sum(v == 0 for v in shares.values())} none"


def table(rows: list[dict]) -> str:
    head = ("| dataset | descriptions | layout | calibration | texts | accuracy | macro-F1 | class shares | "
            "prompt tok/call (face) | prompt tok/call (evaluated) | completion tok/call | s/text |")
    lines = [head, "|---|---|---|---|---:|---:|---:|---|---:|---:|---:|---:|"]
    for r in rows:
        shares = _shares(r["shares"])
        evaluated = "–" if r["prompt_evaluated"] is None else f"{r['prompt_evaluated']:.0f}"
        lines.append(f"| {r['dataset']} | {r.get('descriptions', 'given')} | {r['layout']} | {r['calibration']} | "
                     f"{r['texts']} | "
                     f"{100 * r['accuracy']:.1f}% | {100 * r['macro_f1']:.1f} | {shares} | {r['prompt_tokens']:.0f} | "
                     f"{evaluated} | {r['completion_tokens']:.2f} | {r['seconds_per_text']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="trec6,subj,twitter_complaints")
    parser.add_argument("--layouts", default="shared,candidates")
    parser.add_argument("--texts", type=int, default=120)
    parser.add_argument("--descriptions", default="given", choices=("given", "written", "both"),
                        help="the dataset's hand-written descriptions, ones the LM writes from the seeds, or both")
    parser.add_argument("--calibrations", default=",".join(CALIBRATIONS),
                        help="content-free makes 3 calls per candidate set: many on banking77")
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--local-model", default="qwen2.5-coder-1.5b")
    parser.add_argument("--out", default=None, help="markdown table to write (and print)")
    parser.add_argument("--json", default=None, help="raw figures to write")
    args = parser.parse_args(argv)
    import dspy

    from promptmix_dspy.llm.settings import LMSettings, open_lm

    dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=False)  # every call is made and timed
    rows = []
    if args.json and Path(args.json).exists():  # resumable: a re-run measures only what the JSON lacks
        rows = json.loads(Path(args.json).read_text(encoding="utf-8"))
    calibrations = tuple(args.calibrations.split(","))
    todo = [(name, layout, written) for name in args.datasets.split(",") for layout in args.layouts.split(",")
            for written in {"given": (False,), "written": (True,), "both": (False, True)}[args.descriptions]
            if not any(r["dataset"] == name and r["layout"] == layout
                       and r.get("descriptions", "given").startswith("written") == written for r in rows)]
    with tempfile.TemporaryDirectory() as tmp, \
            open_lm(LMSettings(local_model=args.local_model, cache=False)) if todo else nullcontext() as h:
        for name, layout, written in todo:
            rows += measure(name, layout, args.texts, args.data_dir, h, Path(tmp), calibrations, written)
            print(table(rows[-len(calibrations):]), flush=True)
            if args.json:  # after each measurement: an interruption loses at most the one under way
                Path(args.json).write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    shown = [r for r in rows if r["dataset"] in args.datasets.split(",") and r["layout"] in args.layouts.split(",")
             and r["calibration"] in calibrations]
    text = (f"# Relabel quality and cost ({args.local_model}, 2 CPU cores)\n\n"
            f"`python benchmarks/relabel_quality.py {' '.join(sys.argv[1:])}`\n\nUp to {args.texts} labelled train "
            f"texts per dataset outside seed 0's seeds (never test); top-5 candidates, one text per call, "
            f"temperature 0, 2 requests in flight. Batch calibration's prior is the mean over these texts.\n\n"
            f"{table(shown)}\n")
    print(text)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
