"""Building the LM: any litellm model string, or the embedded llama.cpp server when none is given.

``open_lm(LMSettings(...))`` is a context manager yielding an ``LMHandle`` (the dspy.LM, the adapter that
suits it, and the server it started, if any). Library code enters ``handle.context()``, never a global
``dspy.configure``. API keys come only from the environment: litellm reads the provider's usual variable
(OPENAI_API_KEY, ANTHROPIC_API_KEY, ...), or ``api_key_env`` names another one. Keys are never stored in
settings, written to files or logged.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import threading
from dataclasses import asdict, dataclass, field
from typing import Any, Iterator

import dspy

from promptmix_dspy.llm.adapters import ADAPTERS
from promptmix_dspy.llm.logprobs import TOP_LOGPROBS
from promptmix_dspy.llm.runner import RetryPolicy, cached_tokens, note_cache_served
from promptmix_dspy.store.redaction import register_secret

__all__ = ["LMHandle", "LMSettings", "LazyLM", "PromptMixLM", "build_handle", "estimate_price", "open_lm"]

logger = logging.getLogger(__name__)
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # litellm must not fetch its price map
LM_ENV, API_BASE_ENV = "PROMPTMIX_LM", "PROMPTMIX_API_BASE"
HOSTED_IN_FLIGHT = 16  # requests in flight to a hosted endpoint by default (a 429 with Retry-After is honoured)


def _note_cache_served_usage() -> None:
    """DSPy's usage tracker leaves out an answer its response cache serves (no call was made) and empties its
    usage; before it does, hand the usage the answer had when first made to ``runner.note_cache_served``, so a run
    that reuses another's calls can still be costed alone. Installed once on DSPy's Cache class (every
    ``dspy.configure_cache`` makes a new instance); tests/test_resume.py fails if a DSPy upgrade moves the hook."""
    from dspy.clients.cache import Cache

    prepare = getattr(Cache, "_prepare_cached_response", None)
    if prepare is None or getattr(prepare, "_promptmix", False):
        return

    def _prepare(self: Any, response: Any) -> Any:
        usage = response.get("usage") if isinstance(response, dict) else getattr(response, "usage", None)
        with contextlib.suppress(Exception):  # accounting only: never fail a cached answer over it
            note_cache_served(dict(usage or {}))
        return prepare(self, response)

    _prepare._promptmix = True  # type: ignore[attr-defined]
    Cache._prepare_cached_response = _prepare


_note_cache_served_usage()


class PromptMixLM(dspy.LM):
    """dspy.LM whose cache key also covers the endpoint, and whose transport retries follow a RetryPolicy.

    DSPy's response cache ignores api_base, so two servers of the same model name would share answers. The
    endpoint's hash is folded into rollout_id, which DSPy keeps in the cache key and never sends. DSPy's own
    retry loop is turned off (num_retries=0): ``retry`` (backoff with jitter, Retry-After honoured up to a
    cap) retries timeouts, 429, 5xx and broken connections instead; see runner.RetryPolicy.
    """

    def __init__(self, *args: Any, endpoint_tag: str = "", retry: RetryPolicy | None = None, **kwargs: Any):
        super().__init__(*args, **{**kwargs, "num_retries": 0})
        self.endpoint_tag = endpoint_tag
        self.retry = retry or RetryPolicy()
        self._warned_zero_temp_rollout = True  # the tag is not a sampling request
        self.max_cost: float | None = None
        self.spent = 0.0
        self._spend_lock = threading.Lock()

    def limit_spending(self, max_cost: float | None, spent_before: float = 0.0) -> None:
        """Refuse calls (RunStopped) once the priced usage of this LM reaches ``max_cost`` USD: the cap for work
        that runs outside our runner, such as an optimizer's own calls."""
        self.max_cost, self.spent = max_cost, spent_before

    def _check_spending(self) -> None:
        if self.max_cost is not None and self.spent >= self.max_cost:
            from promptmix_dspy.llm.runner import RunStopped

            raise RunStopped(f"estimated cost ${self.spent:.4f} reached --max-cost ${self.max_cost}")

    def update_history(self, entry: dict) -> None:
        """Every call DSPy finishes passes here (a cache hit with empty usage): price it against ``max_cost``."""
        usage = entry.get("usage") or {}
        if self.max_cost is not None and usage:
            price = estimate_price(self.model, int(usage.get("prompt_tokens") or 0),
                                   int(usage.get("completion_tokens") or 0), cached_tokens(usage))
            with self._spend_lock:
                self.spent += price or 0.0
        super().update_history(entry)

    def _salted(self, kwargs: dict) -> dict:
        rollout = kwargs.get("rollout_id", self.kwargs.get("rollout_id"))  # lm.copy(rollout_id=...) too
        return {**kwargs, "rollout_id": f"{self.endpoint_tag}|{'' if rollout is None else rollout}"}

    def _supported(self, kwargs: dict) -> dict:
        """The call's kwargs without a sampling ``seed`` where the provider takes none (Anthropic refuses it)."""
        if "seed" in kwargs and not takes_seed(self.model):
            return {k: v for k, v in kwargs.items() if k != "seed"}
        return kwargs

    def __call__(self, prompt: Any = None, *, messages: Any = None, **kwargs: Any):
        self._check_spending()
        kwargs = self._from_batch(messages, self._supported(kwargs))
        call, salted = super().__call__, self._salted(kwargs)
        return self.retry.call(lambda: call(prompt, messages=messages, **salted))

    async def acall(self, prompt: Any = None, *, messages: Any = None, **kwargs: Any):
        self._check_spending()
        kwargs = self._from_batch(messages, self._supported(kwargs))
        call, salted = super().acall, self._salted(kwargs)
        return await self.retry.acall(lambda: call(prompt, messages=messages, **salted))

    def _from_batch(self, messages: Any, kwargs: dict) -> dict:
        """Inside a batched stage (llm/batch.py): the batch's answer to this very request, handed to litellm as
        the provider's response; or, when there is none yet, the request recorded for the next batch."""
        from promptmix_dspy.llm.batch import BatchError, Deferred, active_store, custom_id, request_body

        store = active_store()
        if store is None or messages is None:
            return kwargs
        merged = {**self.kwargs, **kwargs}
        body = request_body(self.model, list(messages), merged)
        found = store.lookup(custom_id(body, merged.get("rollout_id")), body)
        if found is None:
            raise Deferred("waiting for a batch")
        if found.get("sync"):
            return kwargs  # the batch failed this item: make the call now (fallback "sync")
        if found.get("body") is None:
            raise BatchError(found.get("error") or "the batch did not answer this request")
        return {**kwargs, "mock_response": found["body"], "cache": False}


@dataclass
class LMSettings:
    """Which LLM to use. ``model=None`` means PROMPTMIX_LM, else the embedded server running ``local_model`` (a
    known name or a .gguf path; default PROMPTMIX_LOCAL_MODEL, else qwen2.5-coder-1.5b). ``server_parallel=None``
    starts the worker layout that suits that model."""

    model: str | None = None
    api_base: str | None = None
    api_key_env: str | None = None
    max_tokens: int = 256
    num_retries: int = 3  # transport retries of one request (timeouts, 429, 5xx, broken connections)
    timeout: float = 120.0  # seconds for one request
    backoff: float = 1.0  # first wait before a transport retry; doubles each time, up to max_backoff
    max_backoff: float = 30.0
    max_retry_after: float = 60.0  # a provider's Retry-After is honoured up to this many seconds
    adapter: str = "auto"
    cache: bool = True
    server_parallel: int | None = None
    local_model: str | None = None
    # Ask one-label answers (relabeling, the teacher) for their logprobs, to get class probabilities: None = where
    # the provider is known to return them (the embedded server, OpenAI and OpenAI-compatible ones), not
    # Anthropic or Bedrock, which return none.
    logprobs: bool | None = None
    # The provider's batch API (llm/batch.py): half the price, answers within 24 hours; "batch" or "sync" is what
    # a failed or expired item becomes. How calls are made, not what they are: a run may switch either way.
    batch_api: bool = False
    batch_fallback: str = "batch"
    batch_poll_seconds: float = 30.0

    def __post_init__(self) -> None:
        self.model = self.model or os.environ.get(LM_ENV) or None
        self.api_base = self.api_base or os.environ.get(API_BASE_ENV) or None
        if self.adapter != "auto" and self.adapter not in ADAPTERS:
            raise ValueError(f"adapter must be 'auto' or one of {sorted(ADAPTERS)}, got {self.adapter!r}")
        if self.api_key_env and self.api_key_env not in os.environ:
            raise ValueError(f"--api-key-env names {self.api_key_env!r}, which is not set in the environment")
        for name in ("max_tokens", "server_parallel"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.timeout > 0:
            raise ValueError(f"timeout must be > 0 seconds, got {self.timeout}")
        if self.batch_fallback not in ("batch", "sync"):
            raise ValueError(f"batch_fallback must be 'batch' or 'sync', got {self.batch_fallback!r}")
        self.retry_policy()  # validates num_retries and the backoff settings

    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(self.num_retries, self.backoff, self.max_backoff, self.max_retry_after)

    @property
    def embedded(self) -> bool:
        return self.model is None


@dataclass
class LMHandle:
    lm: dspy.LM
    adapter: Any
    model: str
    api_base: str | None
    adapter_name: str
    embedded: bool
    transport: dict = field(default_factory=dict)  # timeout and retry settings: how calls were made, not what
    slots: int | None = None  # requests the endpoint answers at once (the embedded server's), None = unknown
    local_model: str | None = None  # the embedded server's model (its registry name, or the file's stem)
    server_root: str | None = None  # the embedded server without /v1 (its /metrics, /slots), None for others
    batch: dict | None = None  # {"fallback", "poll_seconds"}: calls go through the provider's batch API

    def in_flight(self, wanted: int | None) -> int:
        """Requests to keep in flight: ``wanted`` (None: the embedded server's slots, else HOSTED_IN_FLIGHT), but
        never more than the embedded server's slots (a queued request would spend its timeout waiting)."""
        if wanted is None:
            return self.slots or HOSTED_IN_FLIGHT
        return min(wanted, self.slots) if self.slots else wanted

    def context(self, **overrides: Any):
        return dspy.context(lm=self.lm, adapter=self.adapter, track_usage=True, **overrides)

    def describe(self) -> dict:
        """What made the answers, safe to write next to them (no keys)."""
        return {"model": self.model, "api_base": self.api_base, "adapter": self.adapter_name,
                "embedded": self.embedded, "max_tokens": self.lm.kwargs.get("max_tokens"),
                **({"local_model": self.local_model} if self.local_model else {})}

    price_factor: float = 1.0  # BATCH_DISCOUNT when the calls go through a provider's batch API

    def price(self, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0) -> float | None:
        price = estimate_price(self.model, prompt_tokens, completion_tokens, cached_tokens)
        return None if price is None else price * self.price_factor


def estimate_price(model: str, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0) -> float | None:
    """USD from litellm's price table, or None when the model is not in it (local models, unknown names).
    ``cached_tokens`` of the prompt tokens are priced at the provider's cache-read rate where it has one."""
    import litellm

    try:
        prompt_cost, completion_cost = litellm.cost_per_token(model=model, prompt_tokens=prompt_tokens,
                                                             completion_tokens=completion_tokens,
                                                             cache_read_input_tokens=cached_tokens)
    except Exception:  # litellm raises a plain Exception for unknown models
        return None
    return float(prompt_cost + completion_cost)


@contextlib.contextmanager
def open_lm(settings: LMSettings) -> Iterator[LMHandle]:
    """Yield an LMHandle; the embedded server, when used, is stopped on exit, errors and Ctrl-C included."""
    if not settings.embedded:
        yield build_handle(settings, settings.model, settings.api_base, embedded=False)
        return
    from promptmix_dspy.llm.server import LocalServer

    with LocalServer(settings.local_model, parallel=settings.server_parallel) as server:
        handle = build_handle(settings, server.model, server.base_url, embedded=True, identity=server.identity)
        handle.slots, handle.local_model = server.parallel, server.resolved.name
        handle.server_root = server.root_url
        yield handle


def build_handle(settings: LMSettings, model: str, api_base: str | None, embedded: bool,
                 identity: str | None = None) -> LMHandle:
    """The LM for DSPy. Cached answers are keyed by the endpoint too (DSPy's own key ignores api_base): by
    ``identity`` when given (the embedded server, whose port changes every start), else by api_base."""
    import litellm

    # litellm finishes importing here, in this thread: first imported by several DSPy worker threads at once (a
    # compile's parallel evaluation) it raised "partially initialized module 'litellm' has no attribute
    # 'completion'" in all but one of them
    assert callable(litellm.completion)
    adapter_name = settings.adapter if settings.adapter != "auto" else ("llama-cpp" if embedded else "promptmix")
    adapter = ADAPTERS[adapter_name]()
    if hasattr(adapter, "logprobs"):
        wanted = settings.logprobs if settings.logprobs is not None else (embedded or returns_logprobs(model))
        adapter.logprobs = TOP_LOGPROBS if wanted else 0
    kwargs: dict[str, Any] = {"api_base": api_base} if api_base else {}
    if settings.api_key_env:
        kwargs["api_key"] = os.environ[settings.api_key_env]
        register_secret(kwargs["api_key"])  # never written to a file, whatever the variable is called
    elif embedded:
        kwargs["api_key"] = "local"  # the embedded server checks no key, but the client wants one
    if model.startswith("anthropic/"):
        # Anthropic caches a prompt prefix only where asked: the system message holds the task and class cards
        # every call over the same classes shares (OpenAI and llama.cpp reuse a shared prefix by themselves).
        kwargs["cache_control_injection_points"] = [{"location": "message", "role": "system"}]
    tag = hashlib.sha256(f"{model}|{identity or api_base or ''}".encode()).hexdigest()[:12]
    lm = PromptMixLM(model, engine="litellm", max_tokens=settings.max_tokens, retry=settings.retry_policy(),
                     timeout=settings.timeout, cache=settings.cache, endpoint_tag=tag, **kwargs)
    logger.info("LM %s%s (adapter %s)", model, f" at {api_base}" if api_base else "", adapter_name)
    transport = {k: getattr(settings, k) for k in ("timeout", "num_retries", "backoff", "max_backoff",
                                                   "max_retry_after")}
    handle = LMHandle(lm, adapter, model, api_base, adapter_name, embedded, transport)
    if settings.batch_api:
        from promptmix_dspy.llm.batch import BATCH_DISCOUNT

        if embedded:
            raise ValueError("--batch-api is for a provider's batch API; the embedded server answers at once")
        handle.batch = {"fallback": settings.batch_fallback, "poll_seconds": settings.batch_poll_seconds}
        handle.price_factor = BATCH_DISCOUNT
    return handle


LOGPROB_PROVIDERS = ("openai", "azure", "hosted_vllm", "together_ai", "fireworks_ai", "deepinfra", "openrouter")


SEED_PROVIDERS = ("openai", "azure", "hosted_vllm", "together_ai", "fireworks_ai", "deepinfra", "openrouter",
                  "ollama", "ollama_chat")


def takes_seed(model: str) -> bool:
    """Whether the provider takes a sampling seed (the same seeded call then samples the same text)."""
    return model.split("/", 1)[0] in SEED_PROVIDERS


def returns_logprobs(model: str) -> bool:
    """Whether the provider of a litellm model string returns OpenAI-style logprobs (Anthropic does not)."""
    return model.split("/", 1)[0] in LOGPROB_PROVIDERS


def settings_dict(settings: LMSettings) -> dict:
    return asdict(settings)


class LazyLM:
    """Opens the LM (starting the embedded server, if that is the LM) on first use; closes it on exit."""

    def __init__(self, settings: LMSettings | None = None, handle: LMHandle | None = None):
        self.settings, self.handle = settings or LMSettings(), handle
        self._stack = contextlib.ExitStack()

    def __call__(self) -> LMHandle:
        if self.handle is None:
            self.handle = self._stack.enter_context(open_lm(self.settings))
        return self.handle

    def __enter__(self) -> "LazyLM":
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stack.close()
