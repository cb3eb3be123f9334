"""Today's code against the first table's code (ed6cacb) and the authors' protocol, on one machine, one at a time.

Three pipelines on trec6 seed 0 with the default embedded model (Qwen2.5-Coder-1.5B-Instruct), each on its own
server started fresh, the response cache off:

- **now**: this checkout (llama.cpp's own server, one-label answers with probabilities, calibration);
- **before**: the code of commit ed6cacb (llama-cpp-python workers behind a proxy, JSON answers), run from a git
  worktree of this repository with the same virtual environment (it needs llama-cpp-python[server]: install it
  into the venv first, ``pip install 'llama-cpp-python[server]==0.3.36'``);
- **authors'**: the authors' prompts (benchmarks/original_protocol.py) on the new server: free-text answers mapped
  to the nearest class name.

For each: the README's main job (generate 10 texts per class and relabel them) in wall seconds per final example;
relabel accuracy and macro-F1 on the same up-to-120 labelled train texts outside seed 0's seeds (never test;
benchmarks/relabel_quality.py's sample); the teacher's wall seconds per test text over the first ``--test-texts``
of its seeded test sample.

    python benchmarks/side_by_side.py --out evals/results/side_by_side.md [--only now,before,authors]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BEFORE = "ed6cacb"
sys.path.insert(0, str(REPO / "benchmarks"))

# Run inside the old code (PYTHONPATH = its worktree): its relabeler over the texts, then its teacher speed.
OLD_PROBE = r"""
import json, sys, time
from concurrent.futures import ThreadPoolExecutor
import dspy
from promptmix_dspy.data.datasets import load_dataset
from promptmix_dspy.data.fewshot import few_shot_split
from promptmix_dspy.llm.settings import LMSettings, open_lm
from promptmix_dspy.method.candidates import CandidateSelector, SentenceEncoder
from promptmix_dspy.method.modules import Relabeler
from promptmix_dspy.method.signatures import ClassCard
texts, tests, data_dir = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]
dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=False)
ds = load_dataset("trec6", data_dir=data_dir)
split = few_shot_split(ds, 2, 0)
cards = [ClassCard(name=l, description=ds.descriptions[l], examples=ex) for l, ex in split.seeds_by_label().items()]
relabeler = Relabeler(cards, CandidateSelector(split.seeds_by_label(), SentenceEncoder(), 5), task=ds.task)
def label(handle, text):
    with handle.context():
        try:
            return relabeler(text=text).label
        except Exception:
            return None
with open_lm(LMSettings(local_model="qwen2.5-coder-1.5b", cache=False)) as handle:
    order = sorted(texts, key=lambda t: sorted(relabeler.selector(t)))
    with ThreadPoolExecutor(2) as pool:
        got = dict(zip(order, pool.map(lambda t: label(handle, t), order)))
    started = time.monotonic()
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda t: label(handle, t), tests))
    seconds = (time.monotonic() - started) / len(tests)
print(json.dumps({"preds": [got[t] for t in texts], "teacher_seconds": seconds}))
"""


def _sample(data_dir: str):
    from relabel_quality import sample

    from promptmix_dspy.data.datasets import load_dataset
    from promptmix_dspy.data.fewshot import few_shot_split
    from promptmix_dspy.experiments.teacher import teacher_test_set

    ds = load_dataset("trec6", data_dir=data_dir)
    split = few_shot_split(ds, 2, 0)
    return ds, split, sample(ds, 120, {e.text for e in split.seeds}), teacher_test_set(ds.test, 500)


def _scores(gold: list[str], pred: list) -> dict:
    from sklearn.metrics import accuracy_score, f1_score

    pred = [p or "(none)" for p in pred]
    return {"relabel_accuracy": accuracy_score(gold, pred),
            "relabel_macro_f1": f1_score(gold, pred, average="macro", labels=sorted(set(gold)), zero_division=0)}


def _main_job(cmd: list[str], env: dict, out: Path, cwd: Path = REPO) -> dict:
    """The README's main job as a fresh process: wall seconds, and the final examples it wrote."""
    started = time.monotonic()
    proc = subprocess.run(cmd + ["--out", str(out)], env=env, capture_output=True, text=True, timeout=7200, cwd=cwd)
    wall = time.monotonic() - started
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    kept = sum(1 for line in (out / "augmented.jsonl").read_text().splitlines() if line.strip())
    summary = json.loads((out / "summary.json").read_text())
    return {"wall": wall, "kept": kept, "seconds_per_example": wall / kept, "calls": summary["llm"]["llm_calls"],
            "tokens": summary["llm"]["prompt_tokens"] + summary["llm"]["completion_tokens"]}


def run_now(data_dir: str, tmp: Path, test_texts: int) -> dict:
    import dspy
    from relabel_quality import measure

    from promptmix_dspy.llm.runner import Budget
    from promptmix_dspy.llm.settings import LMSettings, open_lm
    from promptmix_dspy.pipeline.config import AugmentConfig
    from promptmix_dspy.pipeline.program import build_program
    from promptmix_dspy.pipeline.relabel import answer_texts

    env = {**os.environ, "DSPY_CACHEDIR": str(tmp / "cache-now")}
    job = _main_job([sys.executable, "-m", "promptmix_dspy.cli", "augment", "--dataset", "trec6", "--data-dir",
                     data_dir, "--no-cache"], env, tmp / "now")
    dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=False)
    ds, split, _, tests = _sample(data_dir)
    with open_lm(LMSettings(cache=False)) as handle:
        quality = {r["calibration"]: r for r in measure("trec6", "candidates", 120, data_dir, handle, tmp,
                                                         ("none", "batch"))}
        from promptmix_dspy.method.signatures import ClassCard

        cards = [ClassCard(name=l, description=ds.descriptions[l], examples=ex) for l, ex in
                 split.seeds_by_label().items()]
        program = build_program(cards, AugmentConfig(), None, ds.task)
        started = time.monotonic()
        answer_texts(program.relabeler, [e.text for e in tests[:test_texts]], tmp / "teacher-now.jsonl",
                     AugmentConfig(), handle, Budget(), "teacher")
        teacher = (time.monotonic() - started) / test_texts
    return {**job, "relabel_accuracy": quality["batch"]["accuracy"], "relabel_macro_f1": quality["batch"]["macro_f1"],
            "relabel_accuracy_raw": quality["none"]["accuracy"], "teacher_seconds": teacher,
            "completion_per_relabel": quality["none"]["completion_tokens"]}


def run_before(data_dir: str, tmp: Path, test_texts: int) -> dict:
    worktree = tmp / "before"
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(worktree), BEFORE], check=True,
                   capture_output=True)
    try:
        env = {**os.environ, "PYTHONPATH": str(worktree), "DSPY_CACHEDIR": str(tmp / "cache-before")}
        # run from inside the worktree: `python -m` and `-c` put the working directory first on sys.path, so from
        # this checkout they would import today's package whatever PYTHONPATH says
        where = subprocess.run([sys.executable, "-c", "import promptmix_dspy; print(promptmix_dspy.__file__)"],
                               env=env, cwd=worktree, capture_output=True, text=True, check=True).stdout.strip()
        if not Path(where).resolve().is_relative_to(worktree.resolve()):
            raise RuntimeError(f"the old code's run would import {where}, not the worktree {worktree}")
        job = _main_job([sys.executable, "-m", "promptmix_dspy.cli", "augment", "--dataset", "trec6", "--data-dir",
                         data_dir, "--no-cache"], env, tmp / "before-run", cwd=worktree)
        _, _, texts, tests = _sample(data_dir)
        proc = subprocess.run([sys.executable, "-c", OLD_PROBE, json.dumps([e.text for e in texts]),
                               json.dumps([e.text for e in tests[:test_texts]]), data_dir], env=env,
                              capture_output=True, text=True, timeout=7200, cwd=worktree)
        if proc.returncode != 0:
            raise RuntimeError(f"the old code's relabeler failed:\n{proc.stderr[-3000:]}")
        probe = json.loads(proc.stdout.strip().splitlines()[-1])
        return {**job, **_scores([e.label for e in texts], probe["preds"]), "teacher_seconds": probe["teacher_seconds"]}
    finally:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(worktree)], capture_output=True)


def run_authors(data_dir: str, tmp: Path, test_texts: int) -> dict:
    import httpx
    import original_protocol as op

    from promptmix_dspy.llm.server import LocalServer
    from promptmix_dspy.method.candidates import CandidateSelector, SentenceEncoder
    from promptmix_dspy.method.mixing import mix_plan

    ds, split, texts, tests = _sample(data_dir)
    seeds = split.seeds_by_label()
    encoder = SentenceEncoder()
    selector = CandidateSelector(seeds, encoder, 5)
    with LocalServer("qwen2.5-coder-1.5b") as server:
        def chat(prompt: str, temperature: float) -> str:
            body = {"model": server.alias, "messages": [{"role": "user", "content": prompt}],
                    "temperature": temperature, "max_tokens": 256}
            return httpx.post(server.base_url + "/chat/completions", json=body, timeout=600).json()[
                "choices"][0]["message"]["content"] or ""

        def relabel(batch: list[str]) -> dict[str, str]:
            order = sorted(batch, key=lambda t: sorted(selector(t)))
            with ThreadPoolExecutor(server.parallel) as pool:
                answers = pool.map(lambda t: chat(op.relabel_prompt(t, selector(t), ds.descriptions, seeds), 0.0),
                                   order)
                return {t: op.map_answer(a, ds.labels, encoder) for t, a in zip(order, answers)}

        started = time.monotonic()
        seed_texts = {e.text for e in split.seeds}
        plan = mix_plan(ds.labels, 10, seed=0)
        with ThreadPoolExecutor(server.parallel) as pool:
            replies = list(pool.map(lambda c: chat(op.generation_prompt(c, ds.descriptions, seeds), 1.0), plan))
        kept = [t for r in replies for t in op.parse_generation(r, seed_texts)]
        relabel(kept)
        wall = time.monotonic() - started
        preds = relabel([e.text for e in texts])
        started = time.monotonic()
        relabel([e.text for e in tests[:test_texts]])
        teacher = (time.monotonic() - started) / test_texts
    return {"wall": wall, "kept": len(kept), "seconds_per_example": wall / max(1, len(kept)), "calls": 2 * len(plan),
            **_scores([e.label for e in texts], [preds[e.text] for e in texts]), "teacher_seconds": teacher}


RUNS = {"now": run_now, "before": run_before, "authors": run_authors}
NAMES = {"now": "today's code (this checkout)", "before": f"the first table's code ({BEFORE})",
         "authors": "the authors' protocol, on the new server"}


def table(results: dict) -> list[str]:
    lines = ["| pipeline | main job wall s | final examples | wall s / final example | relabel accuracy | "
             "relabel macro-F1 | teacher s / test text |", "|---|---:|---:|---:|---:|---:|---:|"]
    for key, r in results.items():
        lines.append(f"| {NAMES[key]} | {r['wall']:.0f} | {r['kept']} | {r['seconds_per_example']:.2f} | "
                     f"{100 * r['relabel_accuracy']:.1f}% | {100 * r['relabel_macro_f1']:.1f} | "
                     f"{r['teacher_seconds']:.2f} |")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--only", default="now,before,authors")
    parser.add_argument("--test-texts", type=int, default=100)
    parser.add_argument("--out", default=None)
    parser.add_argument("--json", default=None)
    parser.add_argument("--keep", default="", help="pipelines whose figures are read back from --json (a run "
                        "measured earlier) instead of measured again, e.g. --only before --keep now,authors")
    args = parser.parse_args(argv)
    args.data_dir = str(Path(args.data_dir).resolve())  # the old code runs from its worktree
    kept = json.loads(Path(args.json).read_text()) if args.keep else {}
    results = {key: kept[key] for key in args.keep.split(",") if key}
    with tempfile.TemporaryDirectory() as tmp:
        for key in args.only.split(","):
            results[key] = RUNS[key](args.data_dir, Path(tmp), args.test_texts)
            print(key, results[key], flush=True)
    results = {key: results[key] for key in RUNS if key in results}
    ratio = {k: results[k]["seconds_per_example"] / results["now"]["seconds_per_example"] for k in results
             if "now" in results}
    text = "\n".join([
        "# Side by side: today's code, the first table's, the authors' protocol (trec6 seed 0, 2 CPU cores)", "",
        f"`python benchmarks/side_by_side.py {' '.join(sys.argv[1:])}`", "",
        "Qwen2.5-Coder-1.5B-Instruct (Q4_K_M), each pipeline on a server of its own, started fresh, no response "
        "cache. Relabel accuracy: up to 120 labelled train texts outside the seeds (never test); today's with its "
        f"default batch calibration. Teacher: the first {args.test_texts} texts of the seeded test sample.", "",
        *table(results), "",
        "Wall time per final example relative to today's: " + ", ".join(f"{NAMES[k]} {v:.2f}x" for k, v in
                                                                          ratio.items())]) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
