"""Wall seconds per phase of a training step, logged as `timing/<phase>`.

The learner's own phases of one step (metrics.jsonl, TensorBoard, the end-of-run table):

    timing/wait_rollouts   idle, waiting for the step's scored groups
    timing/update          the whole update, of which (in the trainer)
        timing/forward       every forward pass (policy, and pi_old / reference when they run)
        timing/backward      every backward pass (with the recomputation of checkpointed chunks)
        timing/optimizer     clip, the non-finite checks, AdamW, schedule
    timing/push            gathering the full weights and pushing them
    timing/evaluate        held-out evaluation, when it runs
    timing/checkpoint      writing a checkpoint, when it runs
    timing/step            the step's wall time: at least the sum of the phases above

and from the rollout side, `timing/generate` / `timing/score`: the longest generation and scoring
batch behind the step's groups (they overlap the learner's phases, so they are not part of the sum).
On CUDA the trainer's timer synchronises at each phase end, so device work counts where it ran.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

from grpo_learner.data.rollout_data import ScoredGroup

PREFIX = "timing/"
# The learner's phases that together take no more than `timing/step` (they never overlap).
LEARNER_PHASES = ("wait_rollouts", "update", "push", "evaluate", "checkpoint")
UPDATE_PHASES = ("forward", "backward", "optimizer")


def _no_sync() -> None:
    return None


def device_sync(device: torch.device) -> Callable[[], None]:
    """What makes queued device work finish before a phase's clock stops."""
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return _no_sync


@dataclass
class PhaseTimer:
    sync: Callable[[], None] = _no_sync
    seconds: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.sync()
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start

    def metrics(self) -> dict[str, float]:
        return {f"{PREFIX}{name}": value for name, value in self.seconds.items()}


def rollout_timing(groups: Sequence[ScoredGroup]) -> dict[str, float]:
    """timing/generate and timing/score: the longest batch behind `groups` (a batch's seconds are
    repeated on each of its groups, so a sum would count them several times). Empty without groups."""
    if not groups:
        return {}
    return {
        f"{PREFIX}generate": max(g.generate_seconds for g in groups),
        f"{PREFIX}score": max(g.score_seconds for g in groups),
    }
