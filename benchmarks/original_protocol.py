"""The authors' protocol (ServiceNow/promptmix-emnlp-2023), re-created prompt for prompt, for side-by-side cost.

Generation (src/generator/__init__.py, prompt_type "mixed"): one plain user message listing the group's classes,
each "N. name, which is about <description>. Some examples of utterances include:" and its seeds as "- " lines,
then "Generate a diverse set of 3 short utterances where each utterance belongs A% to X and B% to Y.\\nExample 1:";
the reply's lines are stripped of "Example k:", "k." and "(85% ...)", and kept unless empty or a seed.
Relabeling (src/models/classifiers.py, GPT classifier): the same class listing over the text's 5 nearest classes
(sorted names), then "Consider the following test sentence:\\n1. <text>\\n\\nClassify the test sentence into one
of the previously described intents. Only provide the name of the intent.\\n1. "; the free-text answer is mapped
to the class whose name embeds nearest (their all-mpnet-base-v2; here the packaged all-MiniLM-L6-v2).
Temperatures 1.0 / 0.0 and max 256 tokens, as there. The set() class order of the original is replaced by the
sorted order (the original is not reproducible there).
"""

from __future__ import annotations

import re

import numpy as np

__all__ = ["class_listing", "generation_prompt", "parse_generation", "relabel_prompt", "map_answer"]


def class_listing(names, descriptions: dict[str, str], seeds: dict[str, list[str]]) -> str:
    lines = ["Consider the task of classifying between the following intents (along with some examples):"]
    for i, name in enumerate(names, 1):
        examples = "\n".join(f"- {t}" for t in seeds[name])
        lines.append(f"{i}. {name}, which is about {descriptions[name]}. Some examples of utterances include:\n"
                     f"{examples}")
    return "\n".join(lines) + "\n"


def generation_prompt(call, descriptions: dict[str, str], seeds: dict[str, list[str]]) -> str:
    """The 'mixed' prompt for one planned mix call (its group, majority, minority and share)."""
    share = int(round(call.majority_share * 100))
    minority = call.minority or next(c for c in call.group if c != call.majority)
    return (class_listing(sorted(call.group), descriptions, seeds)
            + f"\nGenerate a diverse set of 3 short utterances where each utterance belongs {share}% to "
              f"{call.majority} and {100 - share}% to {minority}.\nExample 1:")


def parse_generation(reply: str, seed_texts: set[str]) -> list[str]:
    out = []
    for line in reply.splitlines():
        s = re.sub(r"^Example (\d+):", "", line.replace('"', "").strip()).strip()
        s = re.sub(r"^\d\.", "", s).strip()
        s = re.sub(r"\(\d+%.+\)", "", s).strip()
        if s and s not in seed_texts and s not in out:
            out.append(s)
    return out[:3]


def relabel_prompt(text: str, candidates: list[str], descriptions: dict[str, str],
                   seeds: dict[str, list[str]]) -> str:
    return (class_listing(sorted(candidates), descriptions, seeds)
            + f"\nConsider the following test sentence:\n1. {text}\n\nClassify the test sentence into one of the "
              "previously described intents. Only provide the name of the intent.\n1. ")


def map_answer(answer: str, labels: list[str], encoder) -> str:
    """The class whose name embeds nearest to the answer (cosine), as the original maps free text."""
    vectors = encoder.encode([answer.strip() or "none", *labels])
    vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    return labels[int(np.argmax(vectors[1:] @ vectors[0]))]
