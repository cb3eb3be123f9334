"""Datasets: the shared types, built-in names, user files, the hub, and the seeded few-shot split.

Owns everything about reading labelled text and validating it. May import: store."""
