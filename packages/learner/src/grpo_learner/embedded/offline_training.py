"""The plain AdamW loop the embedded runs use before GRPO: the warm-up and the demo's reward model.

Both train a tiny model in code for a fixed number of steps on batches they draw themselves; only the
loss of a step differs, so the loop (optimizer, train/eval mode, the loss log) is written once here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch
from transformers import PreTrainedModel

logger = logging.getLogger(__name__)


def fit(
    model: PreTrainedModel,
    step_loss: Callable[[int], torch.Tensor],
    *,
    steps: int,
    lr: float,
    log_every: int,
    what: str,
) -> list[float]:
    """`steps` AdamW steps (no weight decay) on `step_loss(step)`; returns each step's loss and leaves
    the model in eval mode."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    model.train()
    losses = []
    for step in range(steps):
        loss = step_loss(step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if (step + 1) % log_every == 0:
            logger.info("%s step %d/%d: loss %.3f", what, step + 1, steps, loss.item())
    model.eval()
    return losses
