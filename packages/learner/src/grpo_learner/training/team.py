"""What the training loop asks of "all learner ranks together", and its one-process answer.

The loop (`loop.train_loop`) runs on rank 0 only. The work that every rank must do in lockstep
(an update, gathering full weights, writing a checkpoint) goes through a `TrainingTeam`:
`SingleProcessTeam` simply does it here; `distributed.leader_team.LeaderTeam` first tells the other ranks
to do the same, so the loop reads the same whether there is one process or many.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import torch

from grpo_learner.data.rollout_data import ScoredGroup
from grpo_learner.grpo.update import Trainer
from grpo_learner.training.checkpoint import TrainerState, save_checkpoint


class TrainingTeam(Protocol):
    async def update(self, groups: Sequence[ScoredGroup], policy_version: int) -> dict[str, float]:
        """One GRPO update on `groups` (every rank) of the weights at `policy_version` (each token's
        lag is measured from it); rank 0's metrics."""

    async def full_weights(self) -> Mapping[str, torch.Tensor]:
        """Every weight whole, by its Hugging Face name (for the weight push; LoRA adapters merged)."""

    async def save_checkpoint(self, state: TrainerState) -> Path: ...

    async def close(self, error: BaseException | None = None, state: TrainerState | None = None) -> None:
        """The run ended in `state`, or failed with `error`: release the other ranks."""


class SingleProcessTeam:
    def __init__(
        self, trainer: Trainer, checkpoint_dir: Path, keep_last: int, tokenizer: Any | None = None
    ) -> None:
        self.trainer = trainer
        self.checkpoint_dir = checkpoint_dir
        self.keep_last = keep_last
        self.tokenizer = tokenizer

    async def update(self, groups: Sequence[ScoredGroup], policy_version: int) -> dict[str, float]:
        # In a worker thread: the rollout feed's gRPC streams keep flowing during the update.
        return await asyncio.to_thread(self.trainer.update, groups, policy_version)

    async def full_weights(self) -> Mapping[str, torch.Tensor]:
        # by the model's own names (peft's with LoRA): the push selection folds the adapters in,
        # and only what it sends (weight_sync/push_selection.py)
        return self.trainer.model.state_dict()

    async def save_checkpoint(self, state: TrainerState) -> Path:
        t = self.trainer
        return await asyncio.to_thread(
            save_checkpoint,
            self.checkpoint_dir,
            state,
            t.model,
            t.optimizer,
            t.scheduler,
            self.tokenizer,
            self.keep_last,
        )

    async def close(self, error: BaseException | None = None, state: TrainerState | None = None) -> None:
        return None
