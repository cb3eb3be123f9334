"""promptmix-dspy: PromptMix (EMNLP 2023) as declarative DSPy programs.

Importing the package is cheap and has no side effects; heavy modules (dspy, torch, transformers) load
when a submodule that needs them is imported.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
