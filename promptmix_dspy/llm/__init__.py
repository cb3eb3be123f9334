"""The LLM plumbing: ``dspy.LM`` from a model string (litellm), the adapters that ask for outputs, the
embedded llama.cpp server, its build and its model registry, class probabilities from logprobs, retries and
budgets.

May import: data, store. Kept free of imports at package level, so ``python -m promptmix_dspy.llm.build`` starts
light."""
