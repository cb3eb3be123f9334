"""Running many LLM calls: threads, retries, usage and cost, error and cost budgets, progress.

Two kinds of retry, both bounded:

- Transport faults (timeouts, 429, 5xx, refused or dropped connections, a garbled body) are retried by
  ``RetryPolicy`` inside the LM (``lm.PromptMixLM``): the same request again after an exponential backoff with
  jitter, or after the provider's Retry-After, capped. DSPy's own loop is off (``num_retries=0``): it cannot
  read the Retry-After header litellm keeps, never caps a hint, and its schedule cannot be configured.
- Answers that do not parse (empty, malformed, a label outside the candidates) are retried by ``run_unit`` as
  a fresh sample (``work(attempt)`` with the next attempt number), up to ``attempts``.

What still fails is counted and skipped; a run never ends on one bad response. It stops only when a budget
(``max_errors``, ``max_cost``) is spent or the provider refuses the credentials, after in-flight work is saved.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import random
import threading
import time
from collections import Counter
from concurrent.futures import ALL_COMPLETED, FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any, Awaitable, Callable, Iterable, Iterator, TypeVar

from tqdm.auto import tqdm

from promptmix_dspy.store.redaction import redact

__all__ = ["Budget", "RetryPolicy", "RunStopped", "UnitResult", "error_kind", "is_fatal", "is_transient",
           "cached_tokens", "note_cache_served", "retry_after", "run_parallel", "run_unit"]

logger = logging.getLogger(__name__)
T = TypeVar("T")
_retry_log: ContextVar[list[str] | None] = ContextVar("promptmix_retry_log", default=None)
_cache_served: ContextVar[list[dict] | None] = ContextVar("promptmix_cache_served", default=None)
_jitter = random.Random()  # timing only: it never changes what a run produces, so it needs no seed


# ----------------------------------------------------------------------------------------------------------
# transport retries


@dataclass(frozen=True)
class RetryPolicy:
    """How the LM retries a transport fault: ``retries`` more tries of the same request.

    The n-th wait is drawn in [b/2, b] with b = min(max_backoff, backoff * 2**n), so many clients do not
    retry in step; a Retry-After (or retry-after-ms) header is honoured instead, up to ``max_retry_after``.
    """

    retries: int = 3
    backoff: float = 1.0
    max_backoff: float = 30.0
    max_retry_after: float = 60.0

    def __post_init__(self) -> None:
        if self.retries < 0:
            raise ValueError(f"num_retries must be >= 0, got {self.retries}")
        for name in ("backoff", "max_backoff", "max_retry_after"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0 seconds, got {getattr(self, name)}")

    def delay(self, exc: BaseException, retry: int) -> float:
        hint = retry_after(exc)
        if hint is not None:
            return min(hint, self.max_retry_after)
        ceiling = min(self.max_backoff, self.backoff * 2 ** min(retry, 30))
        return _jitter.uniform(ceiling / 2, ceiling)

    def call(self, fn: Callable[[], T]) -> T:
        for retry in itertools.count():  # ends by returning, or by _wait_or_raise raising
            try:
                return fn()
            except Exception as exc:
                time.sleep(self._wait_or_raise(exc, retry))

    async def acall(self, fn: Callable[[], Awaitable[T]]) -> T:
        for retry in itertools.count():
            try:
                return await fn()
            except Exception as exc:
                await asyncio.sleep(self._wait_or_raise(exc, retry))

    def _wait_or_raise(self, exc: Exception, retry: int) -> float:
        if retry >= self.retries or not is_transient(exc):
            raise exc
        wait_s = self.delay(exc, retry)
        logger.debug("%s; retry %d of %d in %.2fs", error_kind(exc), retry + 1, self.retries, wait_s)
        if (log := _retry_log.get()) is not None:
            log.append(error_kind(exc))
        return wait_s


def is_transient(exc: BaseException) -> bool:
    """A fault of the transport or the provider's load, worth the same request again."""
    from dspy.utils.exceptions import LMProviderError, is_retryable_lm_error

    if is_retryable_lm_error(exc):
        return True
    # litellm reports a truncated or garbled response body as a provider error without an HTTP status
    return type(exc) is LMProviderError and getattr(exc, "status", None) in (None, 200)


def is_fatal(exc: BaseException) -> bool:
    """The provider refused the key, the account or the model: every other call would fail the same way."""
    from dspy.utils.exceptions import LMAuthError, LMBillingError, LMConfigurationError, LMUnsupportedModelError

    return isinstance(exc, (LMAuthError, LMBillingError, LMConfigurationError, LMUnsupportedModelError))


def error_kind(error: BaseException | str) -> str:
    """The short name a failure is counted under: the exception's class name."""
    return error.split(":", 1)[0] if isinstance(error, str) else type(error).__name__


def retry_after(exc: BaseException) -> float | None:
    """Seconds the provider asked to wait (Retry-After / retry-after-ms), from anywhere in the cause chain."""
    seen: set[int] = set()
    err: BaseException | None = exc
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        for headers in (getattr(err, "litellm_response_headers", None), getattr(err, "headers", None),
                        getattr(getattr(err, "response", None), "headers", None)):
            hint = _header_seconds(headers)
            if hint is not None:
                return hint
        err = err.__cause__ or err.__context__
    return None


def _header_seconds(headers: Any) -> float | None:
    lowered = {str(k).lower(): v for k, v in headers.items()} if hasattr(headers, "items") else {}
    if (millis := _finite(lowered.get("retry-after-ms"))) is not None:
        return millis / 1000
    value = lowered.get("retry-after")
    if value is None or (seconds := _finite(value)) is not None:
        return None if value is None else seconds
    try:  # an HTTP date
        return max(0.0, (parsedate_to_datetime(str(value)) - datetime.now(timezone.utc)).total_seconds())
    except (TypeError, ValueError, OverflowError):
        return None


def _finite(value: Any) -> float | None:
    try:
        seconds = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


@contextmanager
def retry_log() -> Iterator[list[str]]:
    """Collect the transport retries made by LM calls in this context (this thread or task)."""
    log: list[str] = []
    token = _retry_log.set(log)
    try:
        yield log
    finally:
        _retry_log.reset(token)


# ----------------------------------------------------------------------------------------------------------
# units of work and budgets


class RunStopped(RuntimeError):
    """A budget was spent; everything finished so far is saved and the same command resumes."""


@dataclass
class UnitResult:
    value: Any = None
    error: str | None = None
    attempts: int = 0
    retries: int = 0  # transport retries (same request again), over all attempts
    fatal: bool = False  # the provider refused the credentials or the account: no other call can succeed
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_prompt_tokens: int = 0  # of prompt_tokens, those the provider reports read from its prompt cache
    # Tokens of answers served from DSPy's response cache instead (not in prompt/completion_tokens: nothing was
    # sent): what those requests cost when first made, so a run that reuses another's calls can be costed alone.
    cache_served_tokens: int = 0
    cost: float | None = None
    seconds: float = 0.0
    deferred: bool = False  # the unit waits for a provider batch (llm/batch.py): not journaled, not counted

    def usage(self) -> dict:
        return {"attempts": self.attempts, "retries": self.retries, "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens, "cached_prompt_tokens": self.cached_prompt_tokens,
                "cache_served_tokens": self.cache_served_tokens, "cost": self.cost,
                "seconds": round(self.seconds, 3)}


@dataclass
class Budget:
    """Totals over this session of a run, and the limits that stop it cleanly.

    ``max_errors`` counts this session's failures (a resumed run retries what failed before);
    ``max_cost`` covers the whole run: ``spent_before`` is what earlier sessions of it already spent.
    """

    max_errors: int | None = None
    max_cost: float | None = None
    spent_before: float = 0.0
    calls: int = 0
    retries: int = 0
    failed_units: int = 0
    errors: Counter = field(default_factory=Counter)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_prompt_tokens: int = 0
    cache_served_tokens: int = 0
    cost: float = 0.0
    cost_known: bool = True
    stop_reason: str | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        if self.max_cost is not None and self.spent_before >= self.max_cost:
            self.stop_reason = (f"earlier sessions of this run already spent ${self.spent_before:.4f}, at or over "
                                f"--max-cost ${self.max_cost}: raise it to go on")

    def record(self, result: UnitResult) -> None:
        with self._lock:
            self.calls += result.attempts + result.retries
            self.retries += max(0, result.attempts - 1) + result.retries
            self.prompt_tokens += result.prompt_tokens
            self.completion_tokens += result.completion_tokens
            self.cached_prompt_tokens += result.cached_prompt_tokens
            self.cache_served_tokens += result.cache_served_tokens
            self._add_cost(result)
            if result.error:
                self.failed_units += 1
                self.errors[error_kind(result.error)] += 1
            self._check_limits(result)

    def _add_cost(self, result: UnitResult) -> None:
        unknown = result.cost is None and result.prompt_tokens > 0
        if unknown and self.cost_known and self.max_cost is not None:
            logger.warning("--max-cost cannot apply: the model's price is not in litellm's price table")
        self.cost_known &= not unknown
        self.cost += result.cost or 0.0

    def _check_limits(self, result: UnitResult) -> None:
        if result.fatal and self.stop_reason is None:
            self.stop_reason = f"the provider refused the call ({result.error})"
        if self.max_errors is not None and self.failed_units > self.max_errors:
            self.stop_reason = f"more than --max-errors {self.max_errors} failed LLM calls"
        if self.max_cost is not None and self.spent_before + self.cost >= self.max_cost:
            spent = self.spent_before + self.cost
            self.stop_reason = f"estimated cost ${spent:.4f} of the run reached --max-cost ${self.max_cost}"

    def to_dict(self) -> dict:
        return {"llm_calls": self.calls, "retries": self.retries, "failed_units": self.failed_units,
                "errors": dict(self.errors), "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens, "cached_prompt_tokens": self.cached_prompt_tokens,
                "cache_served_tokens": self.cache_served_tokens,
                "cost_usd": round(self.cost, 6) if self.cost_known else None, "stop_reason": self.stop_reason}


def run_unit(work: Callable[[int], T], attempts: int, price: Callable[[int, int], float | None]) -> UnitResult:
    """Run ``work(attempt)`` until it succeeds or ``attempts`` are spent, tracking the tokens of every try.

    Only answers that failed to parse are retried here; a transport fault reaching this point has already
    been retried by the LM's RetryPolicy, and a refused request would be refused again.
    """
    from dspy.utils.usage_tracker import track_usage

    result, start = UnitResult(), time.monotonic()
    served: list[dict] = []
    token = _cache_served.set(served)
    try:
        with retry_log() as transport_retries, track_usage() as tracker:
            _attempt_all(work, attempts, result)
    finally:
        _cache_served.reset(token)
    result.retries = len(transport_retries)
    _add_usage(result, tracker.get_total_tokens(), price)
    result.cache_served_tokens = sum(int(u.get("prompt_tokens") or 0) + int(u.get("completion_tokens") or 0)
                                     for u in served)
    result.seconds = time.monotonic() - start
    return result


def _attempt_all(work: Callable[[int], Any], attempts: int, result: UnitResult) -> None:
    for attempt in range(attempts):
        result.attempts = attempt + 1
        try:
            result.value, result.error = work(attempt), None
            return
        except Exception as exc:  # any provider or parse failure: retry or give up, never crash the run
            if _is_deferred(exc):
                result.deferred, result.error = True, None
                return
            result.error = redact(f"{error_kind(exc)}: {exc}")[:300]  # redact first: no fragment of a key
            result.fatal = is_fatal(exc)
            logger.debug("attempt %d failed: %s", attempt + 1, result.error)
            if result.fatal or is_transient(exc) or _is_request_error(exc):
                return


def _is_deferred(exc: BaseException) -> bool:
    """A call waiting for a batch, however DSPy wrapped it (the exception or one it was raised from)."""
    from promptmix_dspy.llm.batch import Deferred

    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, Deferred):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


def _is_request_error(exc: Exception) -> bool:
    """A request the provider rejected as such (400, context too long): the same prompt fails again."""
    from dspy.utils.exceptions import LMInvalidRequestError

    return isinstance(exc, LMInvalidRequestError)


def _add_usage(result: UnitResult, usage_by_lm: dict, price: Callable[..., float | None]) -> None:
    for usage in usage_by_lm.values():
        result.prompt_tokens += int(usage.get("prompt_tokens") or 0)
        result.completion_tokens += int(usage.get("completion_tokens") or 0)
        result.cached_prompt_tokens += cached_tokens(usage)
    result.cost = (price(result.prompt_tokens, result.completion_tokens, result.cached_prompt_tokens)
                   if result.prompt_tokens else 0.0)


def note_cache_served(usage: dict) -> None:
    """Record, for the ``run_unit`` in progress, the original usage of an answer DSPy served from its response
    cache (llm.settings hooks DSPy's Cache to call this; DSPy's usage tracker leaves cache hits out)."""
    served = _cache_served.get()
    if served is not None and usage:
        served.append(dict(usage))


def cached_tokens(usage: dict) -> int:
    """Prompt tokens read from the provider's cache: OpenAI's prompt_tokens_details.cached_tokens, Anthropic's
    cache_read_input_tokens (litellm passes both through)."""
    details = usage.get("prompt_tokens_details") or {}
    cached = details.get("cached_tokens") if isinstance(details, dict) else getattr(details, "cached_tokens", 0)
    return int(cached or 0) + int(usage.get("cache_read_input_tokens") or 0)


def run_parallel(tasks: Iterable[T], work: Callable[[T], UnitResult], on_done: Callable[[T, UnitResult], None],
                 budget: Budget, threads: int = 4, desc: str = "") -> None:
    """Run ``work`` over tasks on a thread pool; ``on_done`` runs in this thread as each finishes (journal it).

    When the budget's stop_reason is set, no new task starts; in-flight ones finish and are saved, then
    RunStopped is raised. On Ctrl-C (or `kill`), no new task starts either, and the calls already in flight,
    which the provider answers and charges for anyway, are waited for and saved before the interrupt goes on;
    a second Ctrl-C abandons them.
    """
    pending_tasks = list(tasks)
    with ThreadPoolExecutor(max_workers=threads) as pool, tqdm(total=len(pending_tasks), desc=desc,
                                                               unit="call", disable=not pending_tasks,
                                                               mininterval=1.0) as bar:
        queue = iter(pending_tasks)
        in_flight: dict[Future, T] = {}
        _fill(pool, queue, in_flight, work, threads, budget)
        try:
            while in_flight:
                _drain(in_flight, on_done, budget, bar, FIRST_COMPLETED)
                _fill(pool, queue, in_flight, work, threads, budget)
        except KeyboardInterrupt:
            _save_in_flight(in_flight, on_done, budget, bar)
            raise
    if budget.stop_reason:
        raise RunStopped(budget.stop_reason)


def _drain(in_flight: dict, on_done: Callable, budget: Budget, bar: Any, when: str) -> None:
    done, _ = wait(in_flight, return_when=when)
    for fut in done:
        _finish(in_flight.pop(fut), fut.result(), on_done, budget, bar)


def _save_in_flight(in_flight: dict, on_done: Callable, budget: Budget, bar: Any) -> None:
    if not in_flight:
        return
    logger.warning("interrupted: saving the %d call(s) in flight first (Ctrl-C again to abandon them)",
                   len(in_flight))
    budget.stop_reason = budget.stop_reason or "interrupted"
    try:
        _drain(in_flight, on_done, budget, bar, ALL_COMPLETED)
    except KeyboardInterrupt:
        logger.warning("abandoned %d call(s) in flight; they will be made again on resume", len(in_flight))
        for fut in in_flight:
            fut.cancel()


def _finish(task: Any, result: UnitResult, on_done: Callable, budget: Budget, bar: Any) -> None:
    if result.deferred:  # answered in a later pass, once its batch is in (llm/batch.py)
        bar.update(1)
        return
    budget.record(result)
    on_done(task, result)
    bar.update(1)
    bar.set_postfix(errors=budget.failed_units, retries=budget.retries,
                    tokens=budget.prompt_tokens + budget.completion_tokens)


def _fill(pool: ThreadPoolExecutor, queue: Any, in_flight: dict, work: Callable, threads: int,
          budget: Budget) -> None:
    while len(in_flight) < threads and budget.stop_reason is None:
        task = next(queue, None)
        if task is None:
            return
        in_flight[pool.submit(work, task)] = task
