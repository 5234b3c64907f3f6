"""Supervised warm-up: teach the answer format and some arithmetic, then stop early on purpose.

A randomly initialised model never produces a boxed correct answer, so every group has reward 0,
zero variance and zero advantage: GRPO would have nothing to learn from. A short warm-up puts the
model where groups have mixed rewards; GRPO then has to do the rest, which is what the default
run measures.

The loss covers exactly what the model will write itself: the completion's trained segments and EOS,
never the prompt nor an environment's observation (those tokens get loss weight 0, as in GRPO).
Each segment is encoded alone and the ids concatenated, as the rollout service builds an episode.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from transformers import PreTrainedModel, PreTrainedTokenizerFast

from grpo_learner.embedded.offline_training import fit
from grpo_learner.embedded.task import Problem

# A correct completion as (text, trained) segments (see grpo_learner.embedded.tasks.Transcript).
Transcript = Callable[[Problem, random.Random], Sequence[tuple[str, bool]]]


def encode_example(
    tokenizer: PreTrainedTokenizerFast, problem: Problem, segments: Sequence[tuple[str, bool]]
) -> tuple[list[int], list[int]]:
    """(ids, loss mask) of prompt + segments + EOS; mask 1 on trained segments and EOS only."""
    ids = tokenizer(problem.prompt).input_ids
    mask = [0] * len(ids)
    for text, trained in segments:
        piece = tokenizer(text, add_special_tokens=False).input_ids
        ids += piece
        mask += [int(trained)] * len(piece)
    return [*ids, tokenizer.eos_token_id], [*mask, 1]


def _batch(
    tokenizer: PreTrainedTokenizerFast,
    problems: Sequence[Problem],
    transcript: Transcript,
    rng: random.Random,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded (input_ids, attention_mask, loss_mask)."""
    examples = [encode_example(tokenizer, p, transcript(p, rng)) for p in problems]
    rows = [ids for ids, _ in examples]
    masks = [mask for _, mask in examples]
    width = max(map(len, rows))
    ids = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)
    attention = torch.zeros_like(ids)
    loss_mask = torch.zeros_like(ids)
    for i, (row, mask) in enumerate(zip(rows, masks, strict=True)):
        ids[i, : len(row)] = torch.tensor(row)
        attention[i, : len(row)] = 1
        loss_mask[i, : len(row)] = torch.tensor(mask)
    return ids, attention, loss_mask


def supervised_warmup(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerFast,
    problems: Sequence[Problem],
    transcript: Transcript,
    *,
    steps: int,
    batch_size: int = 64,
    lr: float = 1e-3,
    seed: int = 0,
) -> list[float]:
    """Next-token cross-entropy on the trained tokens of correct transcripts; returns each step's loss."""
    rng = random.Random(seed)

    def step_loss(_: int) -> torch.Tensor:
        ids, attention, loss_mask = _batch(tokenizer, rng.sample(list(problems), batch_size), transcript, rng)
        logits = model(input_ids=ids, attention_mask=attention).logits[:, :-1]
        token_loss = F.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none")
        mask = loss_mask[:, 1:].float()
        return (token_loss * mask).sum() / mask.sum()

    return fit(model, step_loss, steps=steps, lr=lr, log_every=100, what="warm-up")
