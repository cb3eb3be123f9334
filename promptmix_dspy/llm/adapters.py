"""How prompts are written and answers read: DSPy adapters, and the registry ``--adapter`` picks from.

- ``promptmix`` (the default for hosted models) and ``llama-cpp`` (the default for the embedded server) write a
  lean prompt: the signature's instructions are the system message, followed by one line saying which JSON
  object to answer with; demos are user/assistant turns; the inputs follow in field order, each under its
  ``[[ ## name ## ]]`` marker, so what is shared between calls (instructions, demos, class cards) comes first
  and the text that varies comes last: a provider's prefix cache, or llama.cpp's, reuses everything before it.
  A small model loses tens of points of accuracy under DSPy's generic field-structure boilerplate
  (DESIGN.md); a capable one does not need it. ``llama-cpp`` also sends the output schema in llama.cpp's
  ``response_format`` form, which it turns into a grammar: a ``Literal`` label is always a candidate and a
  list always has the asked number of items.
- ``json`` and ``chat`` are DSPy's own JSONAdapter (here refusing truncated JSON) and ChatAdapter.

Every adapter here maps a near-miss label to the candidate it unambiguously means ("Location" -> LOC, "hum" ->
HUM) instead of failing; each mapping is recorded (``label_mappings``) so a run can count them.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import re
import typing
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Iterator, Literal

import dspy
import pydantic
from dspy.adapters.chat_adapter import ChatAdapter
from dspy.adapters.json_adapter import JSONAdapter
from dspy.utils.exceptions import AdapterParseError

from promptmix_dspy.llm.logprobs import TOP_LOGPROBS, answer_probabilities

__all__ = ["ADAPTERS", "SHARED_FIELDS", "TEXT_PATTERN", "CompleteJSONAdapter", "LlamaCppAdapter", "PromptMixAdapter",
           "SingleLabel", "label_mappings", "nearest_label", "output_schema", "render_value", "single_label"]

# One line of natural text: starts with a letter, digit or bracket; no control characters (strict JSON refuses
# them raw), braces, backticks or markup, 8-300 characters. llama.cpp turns the pattern into grammar rules over
# the raw JSON characters, so it must also exclude the double quote and the backslash, which would end or
# escape the JSON string.
TEXT_PATTERN = r"^[A-Za-z0-9'(¿¡@#][^\x00-\x1f{}\[\]`<>|\\\"]{7,299}$"
def text_pattern(max_chars: int) -> str:
    """TEXT_PATTERN with another longest length (8 to ``max_chars`` characters)."""
    return TEXT_PATTERN.replace("{7,299}", f"{{7,{max(8, max_chars) - 1}}}")


_mappings: ContextVar[list[tuple[str, str]] | None] = ContextVar("promptmix_label_mappings", default=None)
SHARED_FIELDS = ("candidate_classes", "class_cards")  # inputs the lean prompt puts in the system message
ONE_LABEL_MAX_TOKENS = 16  # a one-label answer is one to three tokens; room for a hosted model's "Answer: X"


# ----------------------------------------------------------------------------------------------------------
# near-miss labels


def nearest_label(answer: str, allowed: typing.Sequence[str]) -> str | None:
    """The candidate ``answer`` unambiguously means, or None.

    In order: the same text ignoring case, spaces and punctuation; the one candidate the answer starts with,
    or that starts with it ("Location" -> LOC, "LOC (location)" -> LOC); the one candidate difflib finds
    close (ratio >= 0.8) with no other within 0.1 of it.
    """
    key = _key(answer)
    if not key:
        return None
    keys = {_key(a): a for a in allowed}
    if key in keys:
        return keys[key]
    prefixed = [a for k, a in keys.items() if k and (key.startswith(k) or k.startswith(key))]
    if len(prefixed) == 1:
        return prefixed[0]
    scored = sorted(((difflib.SequenceMatcher(None, key, k).ratio(), a) for k, a in keys.items()), reverse=True)
    if scored and scored[0][0] >= 0.8 and (len(scored) == 1 or scored[0][0] - scored[1][0] >= 0.1):
        return scored[0][1]
    return None


def _key(text: str) -> str:
    return re.sub(r"[\W_]+", "", str(text).lower())


@contextlib.contextmanager
def label_mappings() -> Iterator[list[tuple[str, str]]]:
    """Collect the (answer, candidate) near-miss mappings made while parsing in this context."""
    log: list[tuple[str, str]] = []
    token = _mappings.set(log)
    try:
        yield log
    finally:
        _mappings.reset(token)


def _map_near_misses(signature: type[dspy.Signature], fields: dict) -> dict:
    for name, value in fields.items():
        field = signature.output_fields.get(name)
        allowed = _literal_values(field.annotation) if field is not None else None
        if allowed is None:
            continue
        if isinstance(value, str):
            fields[name] = _mapped(value, allowed)
        elif isinstance(value, list):
            fields[name] = [_mapped(v, allowed) if isinstance(v, str) else v for v in value]
        elif isinstance(value, dict):
            fields[name] = {k: _mapped(v, allowed) if isinstance(v, str) else v for k, v in value.items()}
    return fields


def _mapped(value: str, allowed: tuple[str, ...]) -> str:
    if value in allowed:
        return value
    label = nearest_label(value, allowed)
    if label is None:
        return value  # DSPy's parse refuses it: the call is retried, then counted
    if (log := _mappings.get()) is not None:
        log.append((value, label))
    return label


def _literal_values(annotation: Any) -> tuple[str, ...] | None:
    """The allowed strings of ``Literal[...]``, ``list[Literal[...]]`` or ``dict[str, Literal[...]]``."""
    if typing.get_origin(annotation) in (list, dict):
        annotation = (typing.get_args(annotation) or (None,))[-1]
    if typing.get_origin(annotation) is Literal:
        return tuple(str(a) for a in typing.get_args(annotation))
    return None


@dataclass(frozen=True)
class SingleLabel:
    """A signature whose one output is a ``Literal`` of class names: answered bare, as short as the label (the
    name, or a code standing for it), never wrapped in JSON."""

    field: str
    names: tuple[str, ...]
    codes: dict[str, str] | None  # name -> code the LM answers with; None: it answers the name

    @property
    def answers(self) -> tuple[str, ...]:
        return tuple(self.codes[n] for n in self.names) if self.codes else self.names

    def name_of(self, answer: str) -> str | None:
        """The class a bare answer stands for: its answer exactly ("B"), a code with trailing punctuation ("B."),
        or a near-miss of a name ("Location" -> LOC, mapped and recorded); None when it is none of them."""
        text = answer.strip().strip("\"'`*").strip()
        by_answer = dict(zip(self.answers, self.names))
        if text in by_answer:
            return by_answer[text]
        if self.codes and text[:1] in by_answer and not text[1:2].isalnum():
            return by_answer[text[:1]]
        return _mapped_or_none(text.rstrip(".:"), self.names)

    def grammar(self) -> str:
        """GBNF: exactly one of the answers."""
        return "root ::= " + " | ".join(json.dumps(a, ensure_ascii=False) for a in self.answers)


def _mapped_or_none(text: str, allowed: tuple[str, ...]) -> str | None:
    mapped = _mapped(text, allowed)
    return mapped if mapped in allowed else None


def single_label(signature: type[dspy.Signature]) -> SingleLabel | None:
    """The SingleLabel of a one-output signature whose output is a Literal of strings, else None."""
    if len(signature.output_fields) != 1:
        return None
    name, field = next(iter(signature.output_fields.items()))
    if typing.get_origin(field.annotation) is not Literal:
        return None
    codes = (field.json_schema_extra or {}).get("answer_codes")
    return SingleLabel(name, tuple(str(a) for a in typing.get_args(field.annotation)), codes or None)


# ----------------------------------------------------------------------------------------------------------
# schemas for constrained decoding


def output_schema(signature: type[dspy.Signature], inputs: dict | None = None) -> dict:
    """The signature's outputs as a JSON schema, for constrained decoding.

    A list output ``f`` holds exactly ``inputs["num_f"]`` items when that input is given (``num_texts`` ->
    ``texts``), else at least one: unconstrained, a small model answers ``[]``, echoes JSON or lists texts
    until max_tokens cuts the JSON off. List strings must be one line of text (TEXT_PATTERN). A dict output
    named ``..._for_x`` for a list input ``x`` has exactly the keys "1".."n", in order, one per item of ``x``
    (``classes_for_texts``: the class of each numbered text): writing the number before each answer keeps a
    small model's answers aligned with the texts, where a bare list drifts.
    """
    fields = {name: (f.annotation, ...) for name, f in signature.output_fields.items()}
    schema = pydantic.create_model("Outputs", **fields).model_json_schema()
    for name, prop in schema.get("properties", {}).items():
        count = _list_count(name, inputs or {})
        if prop.get("type") == "object" and count:
            keys = [str(i) for i in range(1, count + 1)]
            value = prop.get("additionalProperties") or {"type": "string"}
            schema["properties"][name] = {"type": "object", "properties": {k: value for k in keys},
                                          "required": keys, "additionalProperties": False}
        elif prop.get("type") == "array":
            exact = isinstance(count, int) and count > 0
            prop.update(minItems=count if exact else 1, **({"maxItems": count} if exact else {}))
            if prop.get("items", {}).get("type") == "string" and "enum" not in prop["items"]:
                cap = (signature.output_fields[name].json_schema_extra or {}).get("max_chars")
                prop["items"]["pattern"] = text_pattern(cap) if cap else TEXT_PATTERN
    return schema


def _list_count(name: str, inputs: dict) -> int | None:
    if f"num_{name}" in inputs:
        return inputs[f"num_{name}"]
    source = name.rsplit("_for_", 1)[1] if "_for_" in name else None
    return len(inputs[source]) if source and isinstance(inputs.get(source), list) else None


# ----------------------------------------------------------------------------------------------------------
# adapters


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
        return super().parse(signature, json.dumps(_map_near_misses(signature, obj)))


class PromptMixAdapter(CompleteJSONAdapter):
    """The lean prompt (module docstring): instructions, the class cards, the answer's JSON shape, demos, then
    the inputs.

    The class cards (``SHARED_FIELDS``) are what every call over the same classes shares, so they join the
    instructions in the system message, before any demo: the model reads the classes before the worked example,
    and the whole prefix up to the texts is the same for every call over that candidate set.
    """

    logprobs: int = 0  # top logprobs asked for a one-label answer (0: none); set where the provider returns them

    def format(self, signature: type[dspy.Signature], demos: list[dict[str, Any]],
               inputs: dict[str, Any]) -> list[dict[str, Any]]:
        shared = {k: inputs[k] for k in SHARED_FIELDS if inputs.get(k) is not None and k in signature.input_fields}
        rest = {k: v for k, v in inputs.items() if k not in shared}
        system = "\n\n".join([signature.instructions.strip(), *self._sections(signature, shared),
                               answer_format(signature)])
        user = self.format_user_message_content(signature, rest, main_request=True)
        return [{"role": "system", "content": system}, *self.format_demos(signature, demos),
                {"role": "user", "content": user}]

    def format_user_message_content(self, signature: type[dspy.Signature], inputs: dict[str, Any], prefix: str = "",
                                    suffix: str = "", main_request: bool = False) -> str:
        sections = self._sections(signature, {k: v for k, v in inputs.items() if k not in SHARED_FIELDS})
        return "\n\n".join(part for part in (prefix.strip(), *sections, suffix.strip()) if part)

    @staticmethod
    def _sections(signature: type[dspy.Signature], inputs: dict[str, Any]) -> list[str]:
        return [f"[[ ## {name} ## ]]\n{_render_input(name, inputs[name])}"
                for name in signature.input_fields if name in inputs and inputs[name] is not None]

    def format_assistant_message_content(self, signature: type[dspy.Signature], outputs: dict[str, Any],
                                         missing_field_message: str | None = None) -> str:
        one = single_label(signature)
        if one is not None:
            name = str(outputs.get(one.field))
            return one.codes.get(name, name) if one.codes else name
        return json.dumps({name: _plain(outputs[name]) for name in signature.output_fields
                           if outputs.get(name) is not None}, ensure_ascii=False)

    def format_demos(self, signature: type[dspy.Signature], demos: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Each demo as a user turn (the inputs it has) and an assistant turn (its outputs); a demo without
        outputs is skipped. Inputs a demo leaves out (the class cards, shown once in the request) are omitted."""
        messages = []
        for demo in demos:
            if not any(demo.get(name) is not None for name in signature.output_fields):
                continue
            inputs = {k: demo.get(k) for k in signature.input_fields if demo.get(k) is not None}
            messages += [{"role": "user", "content": self.format_user_message_content(signature, inputs)},
                         {"role": "assistant", "content": self.format_assistant_message_content(signature, demo)}]
        return messages


    def parse(self, signature: type[dspy.Signature], completion: str) -> dict[str, Any]:
        one = single_label(signature)
        if one is None:
            return super().parse(signature, completion)
        name = one.name_of(completion)
        if name is None:
            raise AdapterParseError(adapter_name=type(self).__name__, signature=signature, lm_response=completion,
                                    message=f"the answer is none of {list(one.answers)}")
        return {one.field: name}

    def _prepare_response_format(self, lm: Any, lm_kwargs: dict, signature: type[dspy.Signature]) -> None:
        if single_label(signature) is None:
            super()._prepare_response_format(lm, lm_kwargs, signature)

    def __call__(self, lm: Any, lm_kwargs: dict, signature: type[dspy.Signature], demos: list, inputs: dict):
        return super().__call__(lm, self._lm_kwargs(lm_kwargs, signature, inputs), signature, demos, inputs)

    async def acall(self, lm: Any, lm_kwargs: dict, signature: type[dspy.Signature], demos: list, inputs: dict):
        return await super().acall(lm, self._lm_kwargs(lm_kwargs, signature, inputs), signature, demos, inputs)

    def _lm_kwargs(self, lm_kwargs: dict, signature: type[dspy.Signature], inputs: dict) -> dict:
        """A one-label answer is a few tokens (ONE_LABEL_MAX_TOKENS at most) and asks for their logprobs (where
        the provider gives them)."""
        if single_label(signature) is None:
            return lm_kwargs
        lm_kwargs = {**lm_kwargs, "max_tokens": min(lm_kwargs.get("max_tokens") or ONE_LABEL_MAX_TOKENS,
                                                    ONE_LABEL_MAX_TOKENS)}
        if self.logprobs:
            lm_kwargs.update(logprobs=True, top_logprobs=self.logprobs)
        return lm_kwargs

    def _call_postprocess(self, processed_signature: type[dspy.Signature], original_signature: type[dspy.Signature],
                          outputs: list, lm: Any, lm_kwargs: dict) -> list[dict[str, Any]]:
        """A one-label answer also gets ``probs``: each class's probability from the answer's first token
        (llm/logprobs.py), or None where the provider returned no logprobs."""
        values = super()._call_postprocess(processed_signature, original_signature, outputs, lm, lm_kwargs)
        one = single_label(original_signature)
        if one is not None:
            for value, output in zip(values, outputs):
                text = output.get("text") if isinstance(output, dict) else output
                value["probs"] = answer_probabilities(value.pop("logprobs", None), str(text or ""), one.names,
                                                      one.codes)
        return values


class LlamaCppAdapter(PromptMixAdapter):
    """The lean prompt, with the output schema sent in llama.cpp's form so that decoding is constrained.

    llama-cpp-python turns ``{"type": "json_object", "schema": ...}`` into a grammar, but not OpenAI's
    ``json_schema`` form, and DSPy sends a bare json_object to hosted_vllm models.
    """

    logprobs = TOP_LOGPROBS  # llama.cpp's server returns them at no measurable cost

    def _lm_kwargs(self, lm_kwargs: dict, signature: type[dspy.Signature], inputs: dict) -> dict:
        """A one-label answer is constrained by a grammar of its answers; any other by the output schema."""
        lm_kwargs = super()._lm_kwargs(lm_kwargs, signature, inputs)
        one = single_label(signature)
        if one is None:
            return {**lm_kwargs, "response_format": _llama_format(signature, inputs)}
        return {**lm_kwargs, "extra_body": {**(lm_kwargs.get("extra_body") or {}), "grammar": one.grammar()}}

    def _prepare_response_format(self, lm: Any, lm_kwargs: dict, signature: type[dspy.Signature]) -> None:
        if single_label(signature) is None:
            lm_kwargs.setdefault("response_format", _llama_format(signature, None))


def _llama_format(signature: type[dspy.Signature], inputs: dict | None) -> dict:
    return {"type": "json_object", "schema": output_schema(signature, inputs)}


def answer_format(signature: type[dspy.Signature]) -> str:
    """'Answer with a JSON object: {"texts": ["<a new text>", ...]}.', or for a one-label answer 'Answer with the
    class name of one candidate only.'"""
    one = single_label(signature)
    if one is not None:
        desc = (signature.output_fields[one.field].json_schema_extra or {}).get("desc") or "the class"
        return f"Answer with {desc} of one candidate only."
    parts = []
    for name, field in signature.output_fields.items():
        desc = (field.json_schema_extra or {}).get("desc") or name.replace("_", " ")
        kind = typing.get_origin(field.annotation)
        if kind is dict:
            shown = f'{{"1": "<{desc} of item 1>", "2": "<{desc} of item 2>", ...}}'
        elif kind is list:
            shown = f'["<{desc}>", ...]'
        else:
            shown = f"<{desc}>" if field.annotation is int else f'"<{desc}>"'
        parts.append(f'"{name}": {shown}')
    return "Answer with a JSON object: {" + ", ".join(parts) + "}."


def _render_input(name: str, value: Any) -> str:
    """An input as the lean prompt shows it; a one-label call's ``candidates`` as one line."""
    if name == "candidates" and isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return render_value(value)


def render_value(value: Any) -> str:
    """An input as the prompt shows it: class cards as a list of classes, a list of strings numbered."""
    if isinstance(value, list) and value and all(_is_card(v) for v in value):
        return "\n".join(_render_card(v) for v in value)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return "\n".join(f"{i}. {' '.join(v.split())}" for i, v in enumerate(value, start=1)) if value else "(none)"
    if isinstance(value, (dict, list)):
        return json.dumps(_plain(value), ensure_ascii=False)
    return str(value)


def _is_card(value: Any) -> bool:
    return hasattr(value, "name") and hasattr(value, "description") and hasattr(value, "examples")


def _render_card(card: Any) -> str:
    code = getattr(card, "code", None)
    line = f"- {code}. {card.name}: {card.description}" if code else f"- {card.name}: {card.description}"
    if card.examples:
        line += "\n  Examples: " + "; ".join(json.dumps(" ".join(e.split()), ensure_ascii=False)
                                              for e in card.examples)
    return line


def _plain(value: Any) -> Any:
    if isinstance(value, pydantic.BaseModel):
        return value.model_dump()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


ADAPTERS: dict[str, type] = {"promptmix": PromptMixAdapter, "llama-cpp": LlamaCppAdapter, "json": CompleteJSONAdapter,
                             "chat": ChatAdapter}
