"""The embedded LLMs as promptmix uses them: speed, and how well the pipeline's relabeler uses the model.

For each local model (default: both registry models) it starts the embedded server through promptmix's own
path (``open_lm(LMSettings(local_model=...))``, the registry's worker layout) and measures:

* speed: the server's start time, then relabel calls through the pipeline's ``Relabeler`` with 1, 2 and 4
  requests in flight: calls/s and prompt / completion tokens per second of wall time (prompt tokens counted at
  face value: llama.cpp's prefix reuse makes the processed share smaller);
* quality: relabel accuracy and macro-F1 on 60 labelled TREC6 and 60 SUBJ *train* texts outside the seed set
  (seeded, stratified; never test), (a) through the pipeline's Relabeler with the run's defaults (seed 0's
  2 shots, top-5 candidates, one text per call) and (b) through a plain, well-framed prompt on the same server:
  the task sentence, every class with its description, the same seeds as worked turns, a JSON enum answer.

    python benchmarks/local_llm.py [--models qwen2.5-coder-1.5b,smollm2-135m] [--texts 60] [--speed-calls 16]

Prints one table per model and writes --out (default evals/results/local_llm.md).
"""

from __future__ import annotations

import argparse
import json
import random
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

DATASETS = ("trec6", "subj")


def _sample(dataset, n: int, seed_texts: set[str]) -> list:
    by: dict[str, list] = {}
    for ex in dataset.train:
        if ex.text not in seed_texts:
            by.setdefault(ex.label, []).append(ex)
    rng, out = random.Random(1), []
    for label in dataset.labels:
        out += rng.sample(by[label], min(max(1, n // len(dataset.labels)), len(by[label])))
    rng.shuffle(out)
    return out


def _macro_f1(gold: list[str], pred: list, labels: list[str]) -> float:
    scores = []
    for label in labels:
        tp = sum(g == p == label for g, p in zip(gold, pred))
        support, predicted = gold.count(label), sum(p == label for p in pred)
        if support or predicted:
            scores.append(2 * tp / (support + predicted))
    return sum(scores) / len(scores)


def _pipeline(handle, relabeler, texts: list[str], inflight: int) -> tuple[list, dict, float]:
    """Labels through the pipeline's Relabeler, ``inflight`` calls at once; usage summed from DSPy's tracker."""
    from dspy.utils.usage_tracker import track_usage

    def one(text: str):
        with handle.context():
            with track_usage() as tracker:
                pred = relabeler(texts=[text])
            usage = next(iter(tracker.get_total_tokens().values()), {})
        return pred.classes[0], usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0)

    from promptmix_dspy.method.candidates import plan_batches

    order = [batch[0] for batch in plan_batches(texts, relabeler.selector, 1)]  # the pipeline's order: by
    started = time.perf_counter()                                                 # candidate set, prefix reuse
    with ThreadPoolExecutor(inflight) as pool:
        labels = dict(zip(order, pool.map(one, order)))
    seconds = time.perf_counter() - started
    results = [labels[text] for text in texts]
    usage = {"prompt_tokens": sum(r[1] for r in results), "completion_tokens": sum(r[2] for r in results)}
    return [r[0] for r in results], usage, seconds


def _plain(handle, dataset, seeds: dict[str, list[str]], texts: list[str], inflight: int) -> list:
    """The same model with a plain prompt: task, classes with descriptions, seeds as worked turns, JSON enum."""
    from openai import OpenAI

    client = OpenAI(base_url=handle.api_base, api_key="local")
    classes = "\n".join(f"- {label}: {dataset.descriptions[label]}" for label in dataset.labels)
    system = f"{dataset.task}\n\nThe classes:\n{classes}\n\nAnswer in JSON: {{\"label\": <one class name>}}."
    demos = [(text, label) for label in dataset.labels for text in seeds[label]]
    random.Random(0).shuffle(demos)
    messages = [{"role": "system", "content": system}]
    for text, label in demos:
        messages += [{"role": "user", "content": f"Text: {text}"},
                     {"role": "assistant", "content": json.dumps({"label": label})}]
    schema = {"type": "object", "properties": {"label": {"type": "string", "enum": list(dataset.labels)}},
              "required": ["label"]}

    def one(text: str):
        reply = client.chat.completions.create(
            model=handle.model.split("/", 1)[-1], messages=messages + [{"role": "user", "content": f"Text: {text}"}],
            temperature=0.0, max_tokens=32, response_format={"type": "json_object", "schema": schema})
        try:
            return json.loads(reply.choices[0].message.content)["label"]
        except (json.JSONDecodeError, KeyError, TypeError):
            return None

    with ThreadPoolExecutor(inflight) as pool:
        return list(pool.map(one, texts))


def run_model(name: str, args: argparse.Namespace) -> list[str]:
    from promptmix_dspy.data.datasets import load_dataset
    from promptmix_dspy.data.fewshot import few_shot_split
    from promptmix_dspy.llm.settings import LMSettings, open_lm
    from promptmix_dspy.method.modules import Relabeler
    from promptmix_dspy.method.signatures import ClassCard

    lines = [f"## {name}", ""]
    data = {}
    for ds_name in DATASETS:
        dataset = load_dataset(ds_name, data_dir=args.data_dir)
        split = few_shot_split(dataset, 2, 0)
        seeds = split.seeds_by_label()
        cards = [ClassCard(name=label, description=dataset.descriptions[label], examples=seeds[label])
                 for label in dataset.labels]
        data[ds_name] = (dataset, seeds, Relabeler(cards, task=dataset.task),
                         _sample(dataset, args.texts, {e.text for e in split.seeds}))
    speed = ["| in flight | server start s | calls/s | prompt tok/s | completion tok/s |", "|---:|---:|---:|---:|---:|"]
    for inflight in args.inflight:
        started = time.perf_counter()
        with open_lm(LMSettings(local_model=name, server_parallel=min(inflight, 2), cache=False,
                                timeout=600)) as handle:
            start = time.perf_counter() - started
            dataset, seeds, relabeler, sample = data["trec6"]
            texts = [ex.text for ex in sample[:args.speed_calls]]
            _pipeline(handle, relabeler, texts[:2], 1)  # warm-up: the first prompt fills the prefix cache
            _, usage, seconds = _pipeline(handle, relabeler, texts, inflight)
            speed.append(f"| {inflight} | {start:.1f} | {len(texts) / seconds:.2f} | "
                         f"{usage['prompt_tokens'] / seconds:,.0f} | {usage['completion_tokens'] / seconds:.1f} |")
            print(speed[-1], flush=True)
            if inflight != args.quality_inflight:
                continue
            quality = ["| dataset | texts | pipeline acc | pipeline macro-F1 | pipeline no answer | plain acc | "
                       "plain macro-F1 | pipeline prompt tok/text |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
            for ds_name, (dataset, seeds, relabeler, sample) in data.items():
                texts, gold = [ex.text for ex in sample], [ex.label for ex in sample]
                piped, usage, _ = _pipeline(handle, relabeler, texts, inflight)
                plain = _plain(handle, dataset, seeds, texts, inflight)
                acc = [sum(p == g for p, g in zip(pred, gold)) / len(gold) for pred in (piped, plain)]
                f1 = [_macro_f1(gold, pred, dataset.labels) for pred in (piped, plain)]
                quality.append(f"| {ds_name} | {len(texts)} | {acc[0]:.1%} | {f1[0]:.3f} | "
                               f"{sum(p is None for p in piped)} | {acc[1]:.1%} | {f1[1]:.3f} | "
                               f"{usage['prompt_tokens'] / len(texts):.0f} |")
                print(quality[-1], flush=True)
    return lines + ["Speed (pipeline relabel calls on TREC6, face-value tokens):", "", *speed, "",
                    f"Relabel quality ({args.quality_inflight} in flight, temperature 0):", "", *quality, ""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="qwen2.5-coder-1.5b,smollm2-135m")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--texts", type=int, default=60, help="Labelled train texts per dataset.")
    parser.add_argument("--speed-calls", type=int, default=16)
    parser.add_argument("--inflight", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--quality-inflight", type=int, default=2)
    parser.add_argument("--out", default="evals/results/local_llm.md")
    args = parser.parse_args()
    lines = ["# The embedded LLMs through promptmix (benchmarks/local_llm.py)", "",
             f"2 CPU cores; {args.texts} labelled train texts per dataset outside seed 0's 2-shot seeds.", ""]
    for name in args.models.split(","):
        lines += run_model(name, args)
    report = "\n".join(lines)
    print(report)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(report, encoding="utf-8")


if __name__ == "__main__":
    main()
