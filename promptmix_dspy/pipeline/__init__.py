"""Running the PromptMix programs over a dataset, one journaled artifact per step in a run folder:
few-shot split -> class descriptions -> mix plan -> generated.jsonl -> relabeled augmented.jsonl.

May import: method, llm, data, store."""
