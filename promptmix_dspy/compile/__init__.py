"""Compiling the programs: the optimizer registry, what each program is given (student, train and dev
examples, metric), the metrics, and saving compiled state with its meta.json.

May import: method, llm, data, store."""
