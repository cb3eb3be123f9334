"""Run-folder I/O, the bottom layer: append-only journals that survive kill -9, atomic final files,
provenance (versions, dates) and redaction of secrets. Imports nothing from promptmix_dspy."""
