"""The paper as DSPy: typed signatures (docstring = instruction), the modules holding their predictors, the
mix plan, clean-up of generated texts, top-k candidate classes by sentence embedding, and compiled program
state on disk. Nothing here runs a dataset or opens an LM. May import: data, store."""
