"""Speed of the embedded LLM (SmolLM2-135M on llama.cpp) as promptmix uses it.

For 1, 2 and 4 requests in flight, each against a server started with matching --parallel, prints the server
start time, calls per second and completion tokens per second for two call shapes:
  relabel:  ~350 prompt tokens, a schema-constrained one-word label, max_tokens 16, temperature 0
            (the JSON wrapper {"label": "description"} alone takes 9-11 tokens, so 10 would truncate);
  generate: ~350 prompt tokens, a schema-constrained list of 3 short texts, max_tokens 256, temperature 1.0.
Usage: python benchmarks/local_llm.py [--inflight 1 2 4] [--relabel-calls 24] [--generate-calls 8]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from openai import OpenAI

from promptmix_dspy.llm.server import LocalServer

CLASSES = {
    "abbreviation": "questions asking what an abbreviation or acronym stands for, or for the short form of a term",
    "entity": "questions about things: animals, colors, creative works, foods, instruments, products, sports, "
              "substances, languages, religions, vehicles, words, events and other named entities",
    "description": "questions asking for a definition, a description, a manner of doing something or a reason why",
    "human": "questions about people or groups: a person's name, a title, a description of who someone is",
    "location": "questions about places: cities, countries, mountains, states, and other locations",
    "numeric": "questions asking for numbers: counts, dates, distances, money, percentages, sizes, speeds, ages",
}
EXAMPLES = {
    "abbreviation": ["What does NASA stand for?", "What is the abbreviation for ounce?"],
    "entity": ["What breed of dog was Lassie?", "Which instrument did Miles Davis play?"],
    "description": ["Why is the sky blue?", "How do you make a paper airplane?"],
    "human": ["Who wrote Hamlet?", "Which president freed the slaves?"],
    "location": ["Where is the Eiffel Tower?", "What is the capital of Peru?"],
    "numeric": ["How tall is Mount Everest?", "When did World War II end?"],
}
TEXTS = ["What is the population of Canada?", "Who invented the telephone?", "What does CPU stand for?",
         "Where do kangaroos live?", "Why do cats purr?", "What is the fastest car in the world?",
         "How many legs does a spider have?", "Who painted the Mona Lisa?"]
# One line of text, as promptmix_dspy.llm.settings constrains generated texts; \x00-\x1f excluded because llama-cpp-python's
# grammar lets raw control characters into JSON strings, which strict JSON parsing then rejects.
TEXT_PATTERN = r"^[A-Za-z0-9'(¿¡][^\x00-\x1f{}\[\]`#<>|\\\"]{7,159}$"
SYSTEM = ("Your input fields are:\n1. `text` (str): the text to classify\n2. `class_descriptions` (str): the "
          "candidate classes, one per line, as name: description, with two examples each\nYour output fields "
          "are:\n1. `{field}`\nAll interactions will be structured in JSON with the output fields in order. "
          "In adhering to this structure, your objective is: {task}")


@dataclass
class Result:
    workload: str
    inflight: int
    calls: int
    wall_s: float
    completion_tokens: int
    prompt_tokens: float
    latency_s: float
    valid: int


def class_block(names: list[str]) -> str:
    return "\n".join(f"- {name}: {CLASSES[name]}. Examples: {' | '.join(EXAMPLES[name])}" for name in names)


def relabel_request(i: int) -> dict:
    candidates = list(CLASSES)[i % 2:][:5]  # as in PromptMix: the 5 classes nearest the text
    schema = {"type": "object", "required": ["label"],
              "properties": {"label": {"type": "string", "enum": candidates}}}
    task = "Classify the text into exactly one of the candidate classes. Answer with the class name only."
    text = TEXTS[i % len(TEXTS)]
    user = f"[[ ## class_descriptions ## ]]\n{class_block(candidates)}\n\n[[ ## text ## ]]\n{text}\n\n" \
           "Respond with a JSON object with the field `label`, one of the class names."
    return {"messages": [{"role": "system", "content": SYSTEM.format(field="label", task=task)},
                         {"role": "user", "content": user}],
            "max_tokens": 16, "temperature": 0.0, "response_format": {"type": "json_object", "schema": schema}}


def generate_request(i: int) -> dict:
    names = list(CLASSES)
    group = [names[(i + k) % len(names)] for k in range(4)]  # as in PromptMix: 4 classes a prompt
    major, minor = group[0], group[1 + i % 3]
    share = 80 + 5 * (i % 4)
    schema = {"type": "object", "required": ["texts"], "properties": {"texts": {
        "type": "array", "items": {"type": "string", "pattern": TEXT_PATTERN}, "minItems": 3, "maxItems": 3}}}
    task = (f"Generate a diverse set of 3 short utterances where each utterance belongs {share}% to the class "
            f"'{major}' and {100 - share}% to the class '{minor}'.")
    user = f"[[ ## class_descriptions ## ]]\n{class_block(group)}\n\nRespond with a JSON object with the field " \
           "`texts`, a list of 3 strings."
    return {"messages": [{"role": "system", "content": SYSTEM.format(field="texts", task=task)},
                         {"role": "user", "content": user}],
            "max_tokens": 256, "temperature": 1.0, "response_format": {"type": "json_object", "schema": schema}}


def is_valid(workload: str, content: str) -> bool:
    try:
        answer = json.loads(content)
    except json.JSONDecodeError:
        return False
    if workload == "relabel":
        return isinstance(answer, dict) and answer.get("label") in CLASSES
    texts = answer.get("texts") if isinstance(answer, dict) else None
    return isinstance(texts, list) and len(texts) == 3 and all(isinstance(t, str) and t.strip() for t in texts)


def one_call(client: OpenAI, workload: str, i: int) -> tuple[float, int, int, bool]:
    build = relabel_request if workload == "relabel" else generate_request
    start = time.perf_counter()
    resp = client.chat.completions.create(model="smollm2", **build(i))
    latency = time.perf_counter() - start
    valid = is_valid(workload, resp.choices[0].message.content or "")
    return latency, resp.usage.prompt_tokens, resp.usage.completion_tokens, valid


def run_workload(client: OpenAI, workload: str, inflight: int, calls: int) -> Result:
    with ThreadPoolExecutor(inflight) as pool:
        list(pool.map(lambda i: one_call(client, workload, i), range(inflight)))  # warm every worker
        start = time.perf_counter()
        rows = list(pool.map(lambda i: one_call(client, workload, i), range(calls)))
        wall = time.perf_counter() - start
    return Result(workload, inflight, calls, wall, sum(r[2] for r in rows), statistics.mean(r[1] for r in rows),
                  statistics.mean(r[0] for r in rows), sum(r[3] for r in rows))


def bench_parallel(inflight: int, relabel_calls: int, generate_calls: int) -> tuple[float, list[Result]]:
    start = time.perf_counter()
    with LocalServer(parallel=inflight) as server:
        started = time.perf_counter() - start
        client = OpenAI(base_url=server.base_url, api_key="local", max_retries=0, timeout=600)
        results = [run_workload(client, "relabel", inflight, relabel_calls),
                   run_workload(client, "generate", inflight, generate_calls)]
    return started, results


def print_table(starts: dict[int, float], results: list[Result]) -> None:
    print(f"\ncores available: {len(os.sched_getaffinity(0))}; threads per worker = max(1, cores // parallel); "
          f"load average now {os.getloadavg()[0]:.1f} (other work on the machine slows every figure)")
    print("server start (s): " + ", ".join(f"parallel={n}: {s:.1f}" for n, s in starts.items()))
    print(f"\n{'workload':<9} {'in flight':>9} {'calls':>5} {'wall s':>7} {'calls/s':>8} {'compl tok/s':>11} "
          f"{'prompt tok':>10} {'latency s':>9} {'valid':>6}")
    for r in results:
        print(f"{r.workload:<9} {r.inflight:>9} {r.calls:>5} {r.wall_s:>7.1f} {r.calls / r.wall_s:>8.2f} "
              f"{r.completion_tokens / r.wall_s:>11.1f} {r.prompt_tokens:>10.0f} {r.latency_s:>9.2f} "
              f"{r.valid:>3}/{r.calls:<2}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inflight", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--relabel-calls", type=int, default=24)
    parser.add_argument("--generate-calls", type=int, default=8)
    args = parser.parse_args(argv)
    starts, results = {}, []
    for n in args.inflight:
        print(f"parallel={n} ...", file=sys.stderr, flush=True)
        starts[n], rows = bench_parallel(n, args.relabel_calls, args.generate_calls)
        results += rows
    print_table(starts, results)


if __name__ == "__main__":
    main()
