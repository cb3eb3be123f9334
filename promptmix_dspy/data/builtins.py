"""The built-in datasets: their names, where their files are looked for, and their task descriptions."""

from __future__ import annotations

__all__ = ["BUILTIN_DATASETS", "BUILTIN_TASKS", "DATA_DIR_ENV", "TASK_FILE"]

BUILTIN_DATASETS = ("trec6", "subj", "banking77", "twitter_complaints")
DATA_DIR_ENV = "PROMPTMIX_DATA_DIR"
TASK_FILE = "task.txt"
# What each built-in dataset's texts are and what its classes tell apart: written, like the data folders'
# descriptions.json, from the label names and the train split only. A folder's task.txt takes precedence.
BUILTIN_TASKS = {
    "trec6": "The texts are questions, classified by the type of answer they expect.",
    "subj": "The texts are single sentences from movie reviews and plot summaries, classified by whether they "
            "state facts about a film's story (objective) or give the writer's opinion of the film (subjective).",
    "banking77": "The texts are customer messages to a bank's support service, classified by the customer's "
                 "intent.",
    "twitter_complaints": "The texts are tweets, many addressed to companies, classified by whether they "
                          "complain about a product, a service or an experience.",
}
