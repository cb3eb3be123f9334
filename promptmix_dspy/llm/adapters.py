"""How outputs are asked for: DSPy adapters that refuse truncated JSON, and the llama.cpp one that turns the
signature's output schema into a grammar (constrained decoding). ``ADAPTERS`` is the registry ``--adapter``
picks from."""

from __future__ import annotations

import json
from typing import Any

import dspy
import pydantic
from dspy.adapters.chat_adapter import ChatAdapter
from dspy.adapters.json_adapter import JSONAdapter
from dspy.utils.exceptions import AdapterParseError

__all__ = ["ADAPTERS", "TEXT_PATTERN", "CompleteJSONAdapter", "LlamaCppJSONAdapter", "output_schema"]


# One line of natural text: starts with a letter, digit or bracket; no control characters (strict JSON refuses
# them raw), braces, backticks or markup,
# 8-300 characters. llama.cpp turns the pattern into grammar rules over the raw JSON characters, so it must
# also exclude the double quote and the backslash, which would end or escape the JSON string.
TEXT_PATTERN = r"^[A-Za-z0-9'(¿¡][^\x00-\x1f{}\[\]`#<>|\\\"]{7,299}$"


def output_schema(signature: type[dspy.Signature], inputs: dict | None = None) -> dict:
    """The signature's outputs as a JSON schema, for constrained decoding.

    Unconstrained, a tiny model answers ``[]``, ``[", , "]``, echoes JSON and code fences, or lists texts until
    max_tokens cuts the JSON off. So list strings must be one line of text (TEXT_PATTERN), and a list output
    ``f`` holds exactly ``inputs["num_f"]`` items when that input is given (``num_texts`` -> ``texts``), else
    at least one.
    """
    fields = {name: (f.annotation, ...) for name, f in signature.output_fields.items()}
    schema = pydantic.create_model("Outputs", **fields).model_json_schema()
    for name, prop in schema.get("properties", {}).items():
        if prop.get("type") == "array":
            count = (inputs or {}).get(f"num_{name}")
            exact = isinstance(count, int) and count > 0
            prop.update(minItems=count if exact else 1, **({"maxItems": count} if exact else {}))
            if prop.get("items", {}).get("type") == "string":
                prop["items"]["pattern"] = TEXT_PATTERN
    return schema


class CompleteJSONAdapter(JSONAdapter):
    """JSONAdapter that refuses truncated or malformed answers instead of repairing them.

    DSPy's JSONAdapter runs json_repair, which turns a reply cut off at max_tokens (``{"texts": ["a", "b``)
    into a shorter, silently wrong result. Here the reply must be one complete JSON object (code fences
    allowed); anything else is an AdapterParseError, which the runner retries and then counts.
    """

    def parse(self, signature: type[dspy.Signature], completion: str) -> dict[str, Any]:
        text = completion.strip()
        if text.startswith("```"):
            text = text.strip("`").removeprefix("json").strip()
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            raise AdapterParseError(adapter_name=type(self).__name__, signature=signature, lm_response=completion,
                                    message=f"incomplete or malformed JSON ({exc.msg})") from exc
        if not isinstance(obj, dict):
            raise AdapterParseError(adapter_name=type(self).__name__, signature=signature, lm_response=completion,
                                    message="the answer is not a JSON object")
        return super().parse(signature, json.dumps(obj))


class LlamaCppJSONAdapter(CompleteJSONAdapter):
    """JSONAdapter that constrains decoding on llama.cpp servers.

    llama-cpp-python turns ``{"type": "json_object", "schema": ...}`` into a grammar, but not OpenAI's
    ``json_schema`` form, and DSPy sends a bare json_object to hosted_vllm models. With the schema, a
    ``Literal`` label is always a candidate and a list output always the asked number of one-line strings.
    """

    def __call__(self, lm: Any, lm_kwargs: dict, signature: type[dspy.Signature], demos: list, inputs: dict):
        lm_kwargs = {**lm_kwargs, "response_format": _llama_format(signature, inputs)}
        return super().__call__(lm, lm_kwargs, signature, demos, inputs)

    async def acall(self, lm: Any, lm_kwargs: dict, signature: type[dspy.Signature], demos: list, inputs: dict):
        lm_kwargs = {**lm_kwargs, "response_format": _llama_format(signature, inputs)}
        return await super().acall(lm, lm_kwargs, signature, demos, inputs)

    def _prepare_response_format(self, lm: Any, lm_kwargs: dict, signature: type[dspy.Signature]) -> None:
        lm_kwargs.setdefault("response_format", _llama_format(signature, None))


def _llama_format(signature: type[dspy.Signature], inputs: dict | None) -> dict:
    return {"type": "json_object", "schema": output_schema(signature, inputs)}


ADAPTERS: dict[str, type] = {"chat": ChatAdapter, "json": CompleteJSONAdapter, "llama-cpp": LlamaCppJSONAdapter}
