"""promptmix-dspy: PromptMix (EMNLP 2023) as declarative DSPy programs.

Layers, as folders; imports point down only (tests/test_layers.py checks it)::

    cli          the command line
    experiments  specs, methods, one experiment, the grid, report, plots
    pipeline     augment: describe -> generate -> relabel, journaled      (peers: compile, student)
    compile      optimizers, tasks, metrics
    student      train, predict, evaluate
    method       signatures, modules, mixing, clean-up, candidates         (peer: llm)
    llm          LM settings, adapters, local server and models, retries and budgets
    data         datasets, files, hub, the few-shot split
    store        journals, atomic files, provenance, redaction

Importing the package is cheap and has no side effects; heavy modules (dspy, torch, transformers) load
when a submodule that needs them is imported.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
