"""The student: train a BERT-family classifier on seeds + augmented rows, load it, predict, evaluate.

torch and transformers are imported inside functions only. May import: data, store."""
