"""A tiny reward model built in code and trained on preference pairs with the Bradley–Terry loss.

The model is the embedded policy's shape with a one-label classification head
(`Qwen2ForSequenceClassification`, reading the last token): r(x) is its logit. For a pair where a
person preferred `chosen` over `rejected` (same prompt), Bradley–Terry says

    P(chosen > rejected) = sigmoid(r(chosen) - r(rejected)),   loss = -log sigmoid(r_c - r_r)

averaged over the pairs (Ouyang et al. 2022, eq. 1). Only differences of r are learned: its scale and
offset are arbitrary, which is fine for GRPO, whose group-relative advantage removes both.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import AutoModelForSequenceClassification, PreTrainedModel, PreTrainedTokenizerFast

from grpo_learner.embedded.model import tiny_qwen2_config
from grpo_learner.embedded.offline_training import fit
from grpo_learner.embedded.task import Problem

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PreferencePair:
    prompt: str
    chosen: str  # the completion a person preferred
    rejected: str


def build_reward_model(tokenizer: PreTrainedTokenizerFast, seed: int) -> PreTrainedModel:
    """The tiny policy's shape (tiny_qwen2_config) with one output label, untied, randomly initialised."""
    torch.manual_seed(seed)
    config = tiny_qwen2_config(tokenizer)
    config.num_labels = 1
    config.tie_word_embeddings = False
    return AutoModelForSequenceClassification.from_config(config, dtype=torch.float32)


def _rewards(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerFast, texts: Sequence[str]
) -> torch.Tensor:
    """r(text) for each text: right-padded, the head reads the last real token."""
    rows = [tokenizer(text, add_special_tokens=False).input_ids for text in texts]
    width = max(map(len, rows))
    ids = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)
    attention = torch.zeros_like(ids)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row)
        attention[i, : len(row)] = 1
    return model(input_ids=ids, attention_mask=attention).logits[:, 0]


def bradley_terry_loss(chosen: torch.Tensor, rejected: torch.Tensor) -> torch.Tensor:
    """mean(-log sigmoid(r_c - r_r)) (module docstring), as softplus(r_r - r_c) for stability."""
    return F.softplus(rejected - chosen).mean()


def train_reward_model(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerFast,
    pairs: Sequence[PreferencePair],
    *,
    steps: int,
    batch_size: int = 64,
    lr: float = 1e-3,
    seed: int = 0,
) -> list[float]:
    """Bradley–Terry training on `pairs` (prompt + completion texts); returns each step's loss."""
    rng = random.Random(seed)

    def step_loss(_: int) -> torch.Tensor:
        batch = rng.sample(list(pairs), min(batch_size, len(pairs)))
        chosen = _rewards(model, tokenizer, [p.prompt + p.chosen for p in batch])
        rejected = _rewards(model, tokenizer, [p.prompt + p.rejected for p in batch])
        return bradley_terry_loss(chosen, rejected)

    return fit(model, step_loss, steps=steps, lr=lr, log_every=50, what="reward model (Bradley-Terry)")


def preference_accuracy(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerFast, pairs: Sequence[PreferencePair]
) -> float:
    """Share of pairs where r(chosen) > r(rejected)."""
    with torch.inference_mode():
        chosen = _rewards(model, tokenizer, [p.prompt + p.chosen for p in pairs])
        rejected = _rewards(model, tokenizer, [p.prompt + p.rejected for p in pairs])
    return float((chosen > rejected).float().mean())


@dataclass(frozen=True)
class RewardModelRecipe:
    """How an embedded task builds its reward model: the pairs of its problems and the training steps.

    The model is served to the run as the reward component `name`."""

    name: str
    pairs: Callable[[Sequence[Problem], random.Random], list[PreferencePair]]
    steps: int


def prepare_reward_model(
    folder: Path,
    recipe: RewardModelRecipe,
    tokenizer: PreTrainedTokenizerFast,
    train: Sequence[Problem],
    heldout: Sequence[Problem],
    seed: int,
) -> float:
    """Build, train and save (with its tokenizer) the task's reward model; its held-out pair accuracy."""
    rng = random.Random(seed)
    model = build_reward_model(tokenizer, seed)
    losses = train_reward_model(model, tokenizer, recipe.pairs(train, rng), steps=recipe.steps, seed=seed)
    accuracy = preference_accuracy(model, tokenizer, recipe.pairs(heldout, rng))
    logger.info(
        "reward model %r: Bradley-Terry loss %.3f -> %.3f, held-out pairs ranked right %.1f%%",
        recipe.name, losses[0], losses[-1], 100 * accuracy,
    )  # fmt: skip
    model.config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return accuracy
