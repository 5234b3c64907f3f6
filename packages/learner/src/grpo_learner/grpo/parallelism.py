"""The three places where one GRPO update differs between one process and many.

`Trainer` asks a `Parallelism` to (1) run the policy/reference forward that yields completion
logprobs, (2) add per-rank statistics over all ranks, (3) clip the gradient by its global norm.
`SingleProcess` is the plain path (exactly what one process always did); `fsdp.FsdpParallel` is the
torch.distributed / FSDP2 one. Which sequences a rank trains on is decided in `prepare_batch` from
`rank` and `world_size`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor, nn

from grpo_learner.config import SamplingConfig, TrainConfig
from grpo_learner.grpo.batching import MicroBatch
from grpo_learner.grpo.logprobs import completion_logprobs


class Parallelism(Protocol):
    rank: int
    world_size: int

    def logprobs(
        self, model: nn.Module, batch: MicroBatch, with_entropy: bool = True
    ) -> tuple[Tensor, Tensor | None]:
        """Completion logprobs at the run's temperature (and entropies when asked)."""

    def sum_across_ranks(self, values: dict[str, float]) -> dict[str, float]: ...

    def clip_grad_norm(self, params: Iterable[nn.Parameter], max_norm: float) -> float: ...


@dataclass(frozen=True)
class SingleProcess:
    """One process, one plain model; logprobs as `[train]` and `[rollout.sampling]` say."""

    train: TrainConfig
    sampling: SamplingConfig
    rank: int = 0
    world_size: int = 1

    def logprobs(
        self, model: nn.Module, batch: MicroBatch, with_entropy: bool = True
    ) -> tuple[Tensor, Tensor | None]:
        return completion_logprobs(model, batch, self.train, self.sampling, with_entropy)

    def sum_across_ranks(self, values: dict[str, float]) -> dict[str, float]:
        return values

    def clip_grad_norm(self, params: Iterable[nn.Parameter], max_norm: float) -> float:
        return float(torch.nn.utils.clip_grad_norm_(list(params), max_norm))
