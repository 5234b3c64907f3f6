"""How many new prompts each rollout service gets: water-filling over their current loads.

Think of each service as a column filled to its load (prompts it is already working on). New
prompts are poured in one at a time onto the lowest column, so an idle service gets more than a
busy one and, given enough prompts, every column ends at (nearly) the same level:

    loads A=4, B=0, 10 new prompts  ->  A gets 3, B gets 7  (both end at 7)
    loads A=30, B=0, 10 new prompts ->  A gets 0, B gets 10

Ties go to the service that comes first in `order`, which the caller rotates between calls so
equal services take turns at the odd prompt. Pure function: no I/O, no state.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence


def water_fill(loads: Mapping[str, float], count: int, order: Sequence[str] | None = None) -> dict[str, int]:
    """Split `count` prompts over the services in `loads` so the lowest loads are raised first.

    Returns {service: prompts to send}, only services that get at least one prompt.
    """
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    order = list(order) if order is not None else list(loads)
    if set(order) != set(loads):
        raise ValueError("order must name exactly the services in loads")
    if not loads or count == 0:
        return {}
    rank = {name: i for i, name in enumerate(order)}
    heap = [(float(loads[name]), rank[name], name) for name in order]
    heapq.heapify(heap)
    shares: dict[str, int] = {}
    for _ in range(count):
        level, position, name = heapq.heappop(heap)
        shares[name] = shares.get(name, 0) + 1
        heapq.heappush(heap, (level + 1, position, name))
    return shares
