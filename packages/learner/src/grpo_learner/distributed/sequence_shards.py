"""Which rank trains which sequences of a step's batch.

Every rank holds the whole batch and computes the advantages on all of it (group and batch scaling
need every reward), so after that a sequence no longer needs its group: sequences, not groups, are
dealt out. That balances far better than whole groups (a group of 8 long answers next to one of 8
short ones), and the loss does not care which rank holds a sequence: it is a sum over sequences or
tokens divided by batch-wide counts.

Balance: longest first, each to the rank with the fewest tokens so far among those still under the
count cap ceil(n / world_size), so ranks differ by at most one sequence and little in tokens.
Deterministic: every rank computes every rank's shard and so knows, without asking, how many
micro-batches the busiest rank runs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def balanced_shards(lengths: Sequence[int], world_size: int) -> list[list[int]]:
    """Indices into `lengths` for each rank (ascending within a shard)."""
    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}")
    cap = math.ceil(len(lengths) / world_size)
    shards: list[list[int]] = [[] for _ in range(world_size)]
    tokens = [0] * world_size
    for index in sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)):
        rank = min((r for r in range(world_size) if len(shards[r]) < cap), key=lambda r: (tokens[r], r))
        shards[rank].append(index)
        tokens[rank] += lengths[index]
    return [sorted(shard) for shard in shards]
