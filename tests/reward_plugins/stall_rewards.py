"""A reward task that never returns: the reward service's per-item limit must end it (a timeout).

Loaded by the end-to-end tests with `grpo-reward serve --plugin stall_rewards:stall`.
"""

from __future__ import annotations


def stall(completion: str, reference: str, **fields: object) -> float:
    """Spin until the worker is killed (CPU time, so the CPU-seconds limit applies)."""
    del completion, reference, fields
    while True:
        pass
