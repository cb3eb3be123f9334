"""Running many LLM calls: threads, retries, usage and cost, error and cost budgets, progress.

Transport faults (timeouts, 429, 5xx, refused connections) are retried with backoff inside litellm
(``num_retries``); what still fails, and answers that do not parse, are retried here as a fresh sample,
then counted and skipped. A run never ends on one bad response: it stops only when a budget
(``max_errors``, ``max_cost``) is spent, after in-flight work is saved.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, TypeVar

from tqdm.auto import tqdm

__all__ = ["Budget", "RunStopped", "UnitResult", "run_parallel", "run_unit"]

logger = logging.getLogger(__name__)
T = TypeVar("T")


class RunStopped(RuntimeError):
    """A budget was spent; everything finished so far is saved and the same command resumes."""


@dataclass
class UnitResult:
    value: Any = None
    error: str | None = None
    attempts: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float | None = None
    seconds: float = 0.0

    def usage(self) -> dict:
        return {"attempts": self.attempts, "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens, "cost": self.cost, "seconds": round(self.seconds, 3)}


@dataclass
class Budget:
    """Totals over a run, and the limits that stop it cleanly."""

    max_errors: int | None = None
    max_cost: float | None = None
    calls: int = 0
    retries: int = 0
    failed_units: int = 0
    errors: Counter = field(default_factory=Counter)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    cost_known: bool = True
    stop_reason: str | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, result: UnitResult) -> None:
        with self._lock:
            self.calls += result.attempts
            self.retries += max(0, result.attempts - 1)
            self.prompt_tokens += result.prompt_tokens
            self.completion_tokens += result.completion_tokens
            self.cost_known &= result.cost is not None or result.prompt_tokens == 0
            self.cost += result.cost or 0.0
            if result.error:
                self.failed_units += 1
                self.errors[result.error.split(":", 1)[0]] += 1
            self._check_limits()

    def _check_limits(self) -> None:
        if self.max_errors is not None and self.failed_units > self.max_errors:
            self.stop_reason = f"more than --max-errors {self.max_errors} failed LLM calls"
        if self.max_cost is not None and self.cost >= self.max_cost:
            self.stop_reason = f"estimated cost ${self.cost:.4f} reached --max-cost ${self.max_cost}"

    def merge_usage(self, usage: dict) -> None:
        """Count usage recorded in a journal by an earlier (interrupted) run of the same command."""
        with self._lock:
            self.prompt_tokens += usage.get("prompt_tokens", 0)
            self.completion_tokens += usage.get("completion_tokens", 0)
            self.cost += usage.get("cost") or 0.0

    def to_dict(self) -> dict:
        return {"llm_calls": self.calls, "retries": self.retries, "failed_units": self.failed_units,
                "errors": dict(self.errors), "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
                "cost_usd": round(self.cost, 6) if self.cost_known else None, "stop_reason": self.stop_reason}


def run_unit(work: Callable[[int], T], attempts: int, price: Callable[[int, int], float | None]) -> UnitResult:
    """Run ``work(attempt)`` until it succeeds or ``attempts`` are spent, tracking the tokens of every try."""
    from dspy.utils.usage_tracker import track_usage

    result, start = UnitResult(), time.monotonic()
    with track_usage() as tracker:
        for attempt in range(attempts):
            result.attempts = attempt + 1
            try:
                result.value, result.error = work(attempt), None
                break
            except Exception as exc:  # any provider or parse failure: retry, then count and skip
                result.error = f"{type(exc).__name__}: {str(exc)[:300]}"
                logger.debug("attempt %d failed: %s", attempt + 1, result.error)
    _add_usage(result, tracker.get_total_tokens(), price)
    result.seconds = time.monotonic() - start
    return result


def _add_usage(result: UnitResult, usage_by_lm: dict, price: Callable[[int, int], float | None]) -> None:
    for usage in usage_by_lm.values():
        result.prompt_tokens += int(usage.get("prompt_tokens") or 0)
        result.completion_tokens += int(usage.get("completion_tokens") or 0)
    result.cost = price(result.prompt_tokens, result.completion_tokens) if result.prompt_tokens else 0.0


def run_parallel(tasks: Iterable[T], work: Callable[[T], UnitResult], on_done: Callable[[T, UnitResult], None],
                 budget: Budget, threads: int = 4, desc: str = "") -> None:
    """Run ``work`` over tasks on a thread pool; ``on_done`` runs in this thread as each finishes (journal it).

    When the budget's stop_reason is set, no new task starts; in-flight ones finish and are saved, then
    RunStopped is raised.
    """
    pending_tasks = list(tasks)
    with ThreadPoolExecutor(max_workers=threads) as pool, tqdm(total=len(pending_tasks), desc=desc,
                                                               unit="call", disable=not pending_tasks,
                                                               mininterval=1.0) as bar:
        queue = iter(pending_tasks)
        in_flight: dict[Future, T] = {}
        _fill(pool, queue, in_flight, work, threads, budget)
        while in_flight:
            done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            for fut in done:
                task = in_flight.pop(fut)
                result = fut.result()
                budget.record(result)
                on_done(task, result)
                bar.update(1)
                bar.set_postfix(errors=budget.failed_units, tokens=budget.prompt_tokens + budget.completion_tokens)
            _fill(pool, queue, in_flight, work, threads, budget)
    if budget.stop_reason:
        raise RunStopped(budget.stop_reason)


def _fill(pool: ThreadPoolExecutor, queue: Any, in_flight: dict, work: Callable, threads: int,
          budget: Budget) -> None:
    while len(in_flight) < threads and budget.stop_reason is None:
        task = next(queue, None)
        if task is None:
            return
        in_flight[pool.submit(work, task)] = task
