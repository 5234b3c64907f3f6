"""A deterministic in-process group source: the learner's loop without any rollout service.

Step n's groups are a pure function of (seed, n): random prompts and completions over a small
vocabulary, rewarded by the fraction of even token ids. It exists for tests (exact resume), the
learner benchmark, and as the smallest example of the `GroupSource` protocol.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from grpo_learner.data.rollout_data import ScoredCompletion, ScoredGroup
from grpo_learner.data.sources import StepBatch


def synthetic_groups(
    step: int,
    *,
    seed: int = 0,
    num_groups: int = 4,
    group_size: int = 4,
    vocab_size: int = 48,
    prompt_length: tuple[int, int] = (3, 8),
    completion_length: tuple[int, int] = (2, 12),
    policy_version: int = 0,
) -> list[ScoredGroup]:
    gen = torch.Generator().manual_seed(seed * 1_000_003 + step)
    groups = []
    for g in range(num_groups):
        plen = int(torch.randint(prompt_length[0], prompt_length[1] + 1, (), generator=gen))
        prompt = tuple(torch.randint(1, vocab_size, (plen,), generator=gen).tolist())
        completions = []
        for _ in range(group_size):
            clen = int(torch.randint(completion_length[0], completion_length[1] + 1, (), generator=gen))
            tokens = tuple(torch.randint(1, vocab_size, (clen,), generator=gen).tolist())
            logprobs = tuple((-torch.rand(clen, generator=gen) * 4).tolist())
            reward = sum(t % 2 == 0 for t in tokens) / clen
            completions.append(ScoredCompletion(tokens, logprobs, reward, {"even": reward}))
        groups.append(ScoredGroup(f"step{step}-g{g}", prompt, tuple(completions), policy_version))
    return groups


@dataclass
class SyntheticGroupSource:
    """`GroupSource` yielding `synthetic_groups(step)`; its state is the number of batches handed out."""

    seed: int = 0
    num_groups: int = 4
    group_size: int = 4
    vocab_size: int = 48
    completion_length: tuple[int, int] = (2, 12)
    cursor: int = 0

    async def next_batch(self, step: int, policy_version: int) -> StepBatch:
        groups = synthetic_groups(
            self.cursor,
            seed=self.seed,
            num_groups=self.num_groups,
            group_size=self.group_size,
            vocab_size=self.vocab_size,
            completion_length=self.completion_length,
            policy_version=policy_version,
        )
        self.cursor += 1
        return StepBatch(groups=groups, received=len(groups))

    def state_dict(self) -> dict[str, Any]:
        return {"cursor": self.cursor}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.cursor = int(state["cursor"])

    def weights_pushed(self, version: int) -> None:
        return None

    async def close(self) -> None:
        return None
