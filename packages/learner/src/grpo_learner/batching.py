"""Training sequences and length-bucketed micro-batches.

Every completion of every group becomes one `TrainSequence` (prompt + completion, its advantage, the
sampler's logprobs, and which completion tokens the model sampled: an episode's environment tokens
stay in the input as context with loss weight 0 and no logprob). Sequences are sorted by length and
cut into micro-batches, so a micro-batch holds sequences of similar length and right padding stays
small: padding costs compute on every layer, and with sdpa attention a packed row would cost
quadratic attention over the whole pack.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class TrainSequence:
    prompt_ids: tuple[int, ...]
    completion_ids: tuple[int, ...]
    sampler_logprobs: tuple[float, ...]
    advantage: float
    counts: bool = True  # False: kept for shapes, but no token enters the loss (masked truncation)
    model_mask: tuple[bool, ...] = ()  # per completion token, True = sampled by the model; empty: all

    @property
    def model_tokens(self) -> int:
        return sum(self.model_mask) if self.model_mask else len(self.completion_ids)

    @property
    def length(self) -> int:
        return len(self.prompt_ids) + len(self.completion_ids)


@dataclass
class MicroBatch:
    """Right-padded model inputs plus completion-aligned `[N, T]` tensors for the loss."""

    input_ids: Tensor  # [N, L] prompt + completion + pad
    attention_mask: Tensor  # [N, L]
    prompt_lengths: Tensor  # [N]
    completion_ids: Tensor  # [N, T]
    completion_mask: Tensor  # [N, T] bool: real completion tokens (model's and environment's)
    model_mask: Tensor  # [N, T] bool: completion tokens the model sampled (their logprobs are computed)
    loss_mask: Tensor  # [N, T] float: tokens that enter the loss (model tokens of counted sequences)
    advantages: Tensor  # [N]
    sampler_logprobs: Tensor  # [N, T]

    @property
    def num_tokens(self) -> int:
        return int(self.completion_mask.sum())

    def to(self, device: torch.device | str) -> MicroBatch:
        return MicroBatch(**{name: value.to(device) for name, value in vars(self).items()})


def length_buckets(sequences: Sequence[TrainSequence], micro_batch_size: int) -> list[list[int]]:
    """Indices of sequences, sorted by length (stable), cut into chunks of micro_batch_size."""
    order = sorted(range(len(sequences)), key=lambda i: (sequences[i].length, i))
    return [order[start : start + micro_batch_size] for start in range(0, len(order), micro_batch_size)]


def collate(sequences: Sequence[TrainSequence], pad_token_id: int = 0) -> MicroBatch:
    n = len(sequences)
    max_len = max(s.length for s in sequences)
    max_completion = max(len(s.completion_ids) for s in sequences)
    input_ids = torch.full((n, max_len), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((n, max_len), dtype=torch.long)
    completion_ids = torch.full((n, max_completion), pad_token_id, dtype=torch.long)
    completion_mask = torch.zeros((n, max_completion), dtype=torch.bool)
    model_mask = torch.zeros((n, max_completion), dtype=torch.bool)
    sampler_logprobs = torch.zeros((n, max_completion), dtype=torch.float32)
    for row, seq in enumerate(sequences):
        tokens = (*seq.prompt_ids, *seq.completion_ids)
        input_ids[row, : len(tokens)] = torch.tensor(tokens, dtype=torch.long)
        attention_mask[row, : len(tokens)] = 1
        k = len(seq.completion_ids)
        completion_ids[row, :k] = torch.tensor(seq.completion_ids, dtype=torch.long)
        completion_mask[row, :k] = True
        model_mask[row, :k] = torch.tensor(seq.model_mask, dtype=torch.bool) if seq.model_mask else True
        sampler_logprobs[row, :k] = torch.tensor(seq.sampler_logprobs, dtype=torch.float32)
    counts = torch.tensor([s.counts for s in sequences], dtype=torch.bool).unsqueeze(1)
    return MicroBatch(
        input_ids=input_ids,
        attention_mask=attention_mask,
        prompt_lengths=torch.tensor([len(s.prompt_ids) for s in sequences], dtype=torch.long),
        completion_ids=completion_ids,
        completion_mask=completion_mask,
        model_mask=model_mask,
        loss_mask=(model_mask & counts).float(),
        advantages=torch.tensor([s.advantage for s in sequences], dtype=torch.float32),
        sampler_logprobs=sampler_logprobs,
    )
