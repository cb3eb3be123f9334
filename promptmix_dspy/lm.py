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
from dataclasses import asdict, dataclass
from typing import Any, Iterator

import dspy
import pydantic
from dspy.adapters.chat_adapter import ChatAdapter
from dspy.adapters.json_adapter import JSONAdapter

__all__ = ["ADAPTERS", "LMHandle", "LMSettings", "LlamaCppJSONAdapter", "open_lm", "output_schema"]

logger = logging.getLogger(__name__)
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # litellm must not fetch its price map
LM_ENV, API_BASE_ENV = "PROMPTMIX_LM", "PROMPTMIX_API_BASE"


def output_schema(signature: type[dspy.Signature]) -> dict:
    """The signature's outputs as a JSON schema; lists need >= 1 non-empty item (else tiny models answer [])."""
    fields = {name: (f.annotation, ...) for name, f in signature.output_fields.items()}
    schema = pydantic.create_model("Outputs", **fields).model_json_schema()
    for prop in schema.get("properties", {}).values():
        if prop.get("type") == "array":
            prop["minItems"] = 1
            if prop.get("items", {}).get("type") == "string":
                prop["items"]["minLength"] = 1
    return schema


class LlamaCppJSONAdapter(JSONAdapter):
    """JSONAdapter that constrains decoding on llama.cpp servers.

    llama-cpp-python turns ``{"type": "json_object", "schema": ...}`` into a grammar, but not OpenAI's
    ``json_schema`` form, and DSPy sends a bare json_object to hosted_vllm models. With the schema, a
    ``Literal`` label is always a candidate and a list output always a list of strings.
    """

    def _prepare_response_format(self, lm: Any, lm_kwargs: dict, signature: type[dspy.Signature]) -> None:
        lm_kwargs["response_format"] = {"type": "json_object", "schema": output_schema(signature)}


ADAPTERS: dict[str, type] = {"chat": ChatAdapter, "json": JSONAdapter, "llama-cpp": LlamaCppJSONAdapter}


class PromptMixLM(dspy.LM):
    """dspy.LM whose cache key also covers the endpoint.

    DSPy's response cache ignores api_base, so two servers of the same model name would share answers. The
    endpoint's hash is folded into rollout_id, which DSPy keeps in the cache key and never sends.
    """

    def __init__(self, *args: Any, endpoint_tag: str = "", **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.endpoint_tag = endpoint_tag
        self._warned_zero_temp_rollout = True  # the tag is not a sampling request

    def _salted(self, kwargs: dict) -> dict:
        return {**kwargs, "rollout_id": f"{self.endpoint_tag}|{kwargs.get('rollout_id', '')}"}

    def __call__(self, prompt: Any = None, *, messages: Any = None, **kwargs: Any):
        return super().__call__(prompt, messages=messages, **self._salted(kwargs))

    async def acall(self, prompt: Any = None, *, messages: Any = None, **kwargs: Any):
        return await super().acall(prompt, messages=messages, **self._salted(kwargs))


@dataclass
class LMSettings:
    """Which LLM to use. ``model=None`` means PROMPTMIX_LM, else the embedded SmolLM2 server."""

    model: str | None = None
    api_base: str | None = None
    api_key_env: str | None = None
    max_tokens: int = 256
    num_retries: int = 3
    timeout: float = 120.0
    adapter: str = "auto"
    cache: bool = True
    server_parallel: int = 2

    def __post_init__(self) -> None:
        self.model = self.model or os.environ.get(LM_ENV) or None
        self.api_base = self.api_base or os.environ.get(API_BASE_ENV) or None
        if self.adapter != "auto" and self.adapter not in ADAPTERS:
            raise ValueError(f"adapter must be 'auto' or one of {sorted(ADAPTERS)}, got {self.adapter!r}")
        if self.api_key_env and self.api_key_env not in os.environ:
            raise ValueError(f"--api-key-env names {self.api_key_env!r}, which is not set in the environment")
        for name in ("max_tokens", "server_parallel"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

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

    def context(self, **overrides: Any):
        return dspy.context(lm=self.lm, adapter=self.adapter, track_usage=True, **overrides)

    def describe(self) -> dict:
        """What made the answers, safe to write next to them (no keys)."""
        return {"model": self.model, "api_base": self.api_base, "adapter": self.adapter_name,
                "embedded": self.embedded, "max_tokens": self.lm.kwargs.get("max_tokens")}

    def price(self, prompt_tokens: int, completion_tokens: int) -> float | None:
        return estimate_price(self.model, prompt_tokens, completion_tokens)


def estimate_price(model: str, prompt_tokens: int, completion_tokens: int) -> float | None:
    """USD from litellm's price table, or None when the model is not in it (local models, unknown names)."""
    import litellm

    try:
        prompt_cost, completion_cost = litellm.cost_per_token(model=model, prompt_tokens=prompt_tokens,
                                                             completion_tokens=completion_tokens)
    except Exception:  # litellm raises a plain Exception for unknown models
        return None
    return float(prompt_cost + completion_cost)


@contextlib.contextmanager
def open_lm(settings: LMSettings) -> Iterator[LMHandle]:
    """Yield an LMHandle; the embedded server, when used, is stopped on exit, errors and Ctrl-C included."""
    if not settings.embedded:
        yield build_handle(settings, settings.model, settings.api_base, embedded=False)
        return
    from promptmix_dspy.server import LocalServer

    with LocalServer(parallel=settings.server_parallel) as server:
        yield build_handle(settings, server.model, server.base_url, embedded=True)


def build_handle(settings: LMSettings, model: str, api_base: str | None, embedded: bool) -> LMHandle:
    adapter_name = settings.adapter if settings.adapter != "auto" else ("llama-cpp" if embedded else "json")
    kwargs: dict[str, Any] = {"api_base": api_base} if api_base else {}
    if settings.api_key_env:
        kwargs["api_key"] = os.environ[settings.api_key_env]
    elif embedded:
        kwargs["api_key"] = "local"  # the embedded server checks no key, but the client wants one
    tag = hashlib.sha256(f"{model}|{api_base or ''}".encode()).hexdigest()[:12]
    lm = PromptMixLM(model, engine="litellm", max_tokens=settings.max_tokens, num_retries=settings.num_retries,
                     timeout=settings.timeout, cache=settings.cache, endpoint_tag=tag, **kwargs)
    logger.info("LM %s%s (adapter %s)", model, f" at {api_base}" if api_base else "", adapter_name)
    return LMHandle(lm, ADAPTERS[adapter_name](), model, api_base, adapter_name, embedded)


def settings_dict(settings: LMSettings) -> dict:
    return asdict(settings)
