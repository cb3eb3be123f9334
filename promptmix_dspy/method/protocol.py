"""The protocol version: what the prompts, the signatures and the method do. It is part of every run's and
every result row's identity, so a row made before a change of prompt or method is never paired with, adopted
into, or resumed by a run made after it. Bump it with every change that can change an LLM answer or a row.

History:
1. (unversioned) the first table's protocol, up to commit ed6cacb.
2. answers as short as the label with class probabilities from logprobs, contamination removal, seeded calls,
   llama.cpp's own server.
"""

PROTOCOL_VERSION = 2

__all__ = ["PROTOCOL_VERSION"]
