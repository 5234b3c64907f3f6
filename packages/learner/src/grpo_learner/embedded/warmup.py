"""Supervised warm-up: teach the answer format and some arithmetic, then stop early on purpose.

A randomly initialised model never produces a boxed correct answer, so every group has reward 0,
zero variance and zero advantage: GRPO would have nothing to learn from. A short warm-up puts the
model where groups have mixed rewards; GRPO then has to do the rest, which is what the default
run measures.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from transformers import PreTrainedModel, PreTrainedTokenizerFast

from grpo_learner.embedded.task import Problem, solution_text

logger = logging.getLogger(__name__)


def _batch(
    tokenizer: PreTrainedTokenizerFast, problems: Sequence[Problem], rng: random.Random
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded (input_ids, attention_mask, loss_mask); the loss covers completion tokens only."""
    rows, masks = [], []
    for problem in problems:
        prompt = tokenizer(problem.prompt).input_ids
        completion = [*tokenizer(solution_text(problem, rng)).input_ids, tokenizer.eos_token_id]
        rows.append(prompt + completion)
        masks.append([0] * len(prompt) + [1] * len(completion))
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
    *,
    steps: int,
    batch_size: int = 64,
    lr: float = 1e-3,
    seed: int = 0,
) -> list[float]:
    """Next-token cross-entropy on correct solutions; returns the loss of every step."""
    rng = random.Random(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    model.train()
    losses = []
    for step in range(steps):
        ids, attention, loss_mask = _batch(tokenizer, rng.sample(list(problems), batch_size), rng)
        logits = model(input_ids=ids, attention_mask=attention).logits[:, :-1]
        token_loss = F.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none")
        mask = loss_mask[:, 1:].float()
        loss = (token_loss * mask).sum() / mask.sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if (step + 1) % 100 == 0:
            logger.info("warm-up step %d/%d: loss %.3f", step + 1, steps, loss.item())
    model.eval()
    return losses
