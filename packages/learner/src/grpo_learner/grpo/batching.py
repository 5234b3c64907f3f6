"""Training sequences and micro-batches laid out so that a group's prompt is computed once.

Every completion of every group becomes one `TrainSequence` (prompt + completion, its advantage, the
sampler's logprobs, and which completion tokens the model sampled: an episode's environment tokens
stay in the input as context with loss weight 0 and no logprob). A micro-batch keeps the prompts
apart from the completions: its distinct prompts, left-padded, as `[P, Lp]`, each completion row
pointing at its prompt (`prompt_index`), and the completions right-padded as `[N, T]`. The G
completions of a group share one prompt row, so the learner can run the prompt once and attend to
its KV from all G completions (`logprobs.completion_logprobs`): per group the layers process
`Lp + G * T` tokens instead of `G * (Lp + T)`.

`length_buckets` keeps a group's sequences together (sorted by prompt length, then prompt, then
completion length) so that a micro-batch holds whole groups where its size allows, and prompts of
similar length: padding costs compute on every layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:  # packing.py builds it from a MicroBatch, so it imports this module
    from grpo_learner.grpo.packing import PackedRows


@dataclass(frozen=True)
class TrainSequence:
    prompt_ids: tuple[int, ...]
    completion_ids: tuple[int, ...]
    sampler_logprobs: tuple[float, ...]
    advantage: float
    counts: bool = True  # False: kept for shapes, but no token enters the loss (masked truncation)
    model_mask: tuple[bool, ...] = ()  # per completion token, True = sampled by the model; empty: all
    # per completion token, how many versions its sampler is behind the learner's weights (partial
    # rollouts mix versions in one completion); empty: 0 for every token
    token_lag: tuple[int, ...] = ()

    @property
    def model_tokens(self) -> int:
        return sum(self.model_mask) if self.model_mask else len(self.completion_ids)

    @property
    def length(self) -> int:
        return len(self.prompt_ids) + len(self.completion_ids)


@dataclass
class MicroBatch:
    """Left-padded distinct prompts, right-padded completions pointing at them, and `[N, T]` tensors
    for the loss (aligned with the completions)."""

    prompt_ids: Tensor  # [P, Lp] the micro-batch's distinct prompts, left-padded
    prompt_mask: Tensor  # [P, Lp] 1 on prompt tokens, 0 on the left padding
    prompt_index: Tensor  # [N] the prompt row of each completion row
    completion_ids: Tensor  # [N, T] right-padded
    completion_mask: Tensor  # [N, T] bool: real completion tokens (model's and environment's)
    model_mask: Tensor  # [N, T] bool: completion tokens the model sampled (their logprobs are computed)
    loss_mask: Tensor  # [N, T] float: tokens that enter the loss (model tokens of counted sequences)
    advantages: Tensor  # [N]
    sampler_logprobs: Tensor  # [N, T]
    token_lag: Tensor  # [N, T] float: versions each token's sampler is behind the learner's
    # train.packing: the packed layout of these completions, built once on the CPU (`prepare_batch`)
    # and moved with them, for every forward of the step; None: not built (the padded layout)
    packed: PackedRows | None = None
    # True: train.packing is on but this step runs padded, since packing would compute more
    # (`prepare_batch`, layout_cost.py)
    padded: bool = False

    @property
    def num_tokens(self) -> int:
        return int(self.completion_mask.sum())

    def to(self, device: torch.device | str) -> MicroBatch:
        return MicroBatch(
            **{
                name: value.to(device) if hasattr(value, "to") else value
                for name, value in vars(self).items()
            }
        )


def length_buckets(sequences: Sequence[TrainSequence], micro_batch_size: int) -> list[list[int]]:
    """Indices of sequences cut into chunks of micro_batch_size, sorted (stably) by prompt length,
    prompt, completion length: a group's completions end up next to each other."""
    order = sorted(
        range(len(sequences)),
        key=lambda i: (len(sequences[i].prompt_ids), sequences[i].prompt_ids, sequences[i].length, i),
    )
    return [order[start : start + micro_batch_size] for start in range(0, len(order), micro_batch_size)]


def collate(sequences: Sequence[TrainSequence], pad_token_id: int = 0) -> MicroBatch:
    prompts: dict[tuple[int, ...], int] = {}  # distinct prompt -> its row, in order of appearance
    prompt_index = [prompts.setdefault(tuple(s.prompt_ids), len(prompts)) for s in sequences]
    width = max(len(p) for p in prompts)
    prompt_ids = torch.full((len(prompts), width), pad_token_id, dtype=torch.long)
    prompt_mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        prompt_ids[row, width - len(prompt) :] = torch.tensor(prompt, dtype=torch.long)
        prompt_mask[row, width - len(prompt) :] = 1
    n = len(sequences)
    max_completion = max(len(s.completion_ids) for s in sequences)
    completion_ids = torch.full((n, max_completion), pad_token_id, dtype=torch.long)
    completion_mask = torch.zeros((n, max_completion), dtype=torch.bool)
    model_mask = torch.zeros((n, max_completion), dtype=torch.bool)
    sampler_logprobs = torch.zeros((n, max_completion), dtype=torch.float32)
    token_lag = torch.zeros((n, max_completion), dtype=torch.float32)
    for row, seq in enumerate(sequences):
        k = len(seq.completion_ids)
        completion_ids[row, :k] = torch.tensor(seq.completion_ids, dtype=torch.long)
        completion_mask[row, :k] = True
        model_mask[row, :k] = torch.tensor(seq.model_mask, dtype=torch.bool) if seq.model_mask else True
        sampler_logprobs[row, :k] = torch.tensor(seq.sampler_logprobs, dtype=torch.float32)
        if seq.token_lag:
            token_lag[row, :k] = torch.tensor(seq.token_lag, dtype=torch.float32)
    counts = torch.tensor([s.counts for s in sequences], dtype=torch.bool).unsqueeze(1)
    return MicroBatch(
        prompt_ids=prompt_ids,
        prompt_mask=prompt_mask,
        prompt_index=torch.tensor(prompt_index, dtype=torch.long),
        completion_ids=completion_ids,
        completion_mask=completion_mask,
        model_mask=model_mask,
        loss_mask=(model_mask & counts).float(),
        advantages=torch.tensor([s.advantage for s in sequences], dtype=torch.float32),
        sampler_logprobs=sampler_logprobs,
        token_lag=token_lag,
    )
