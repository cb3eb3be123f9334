"""The PromptMix program a run uses: over the class cards, with top-k candidates by sentence embedding, the
dataset's task description in front of every instruction, and compiled state when a programs folder is given."""

from __future__ import annotations

from pathlib import Path

from promptmix_dspy.method.candidates import CandidateSelector, SentenceEncoder
from promptmix_dspy.method.modules import PromptMix
from promptmix_dspy.method.signatures import ClassCard
from promptmix_dspy.pipeline.config import AugmentConfig

__all__ = ["build_program"]


def build_program(cards: list[ClassCard], config: AugmentConfig, programs: str | Path | None,
                  task: str | None = None) -> PromptMix:
    seeds = {card.name: card.examples for card in cards}
    encoder = SentenceEncoder(config.encoder) if config.top_k < len(cards) else None
    selector = CandidateSelector(seeds, encoder, config.top_k)
    program = PromptMix(cards, selector, config.generation_temperature, config.relabel_temperature, task,
                        layout=config.layout, seed=config.seed, generation_layout=config.generation_cards)
    if programs:
        from promptmix_dspy.method.programs import load_compiled

        load_compiled(program, programs, [card.name for card in cards])
    return program
