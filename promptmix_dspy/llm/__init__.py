"""The LLM plumbing: ``dspy.LM`` from a model string (litellm), the adapters that ask for outputs, the
embedded llama.cpp server and its model registry, the dispatching proxy, retries and budgets.

May import: data, store. Kept free of imports at package level, because the proxy runs as its own small
process (``python -m promptmix_dspy.llm.proxy``) and must start light."""
