"""What the reward-model process does with a batch: format, truncate, forward, answer OOM per item.

    text_i   = chat_template([user: prompt_i, assistant: completion_i])   when the tokenizer has one,
               prompt_i + completion_i                                     otherwise
    reward_i = logit of the model's one label on text_i (cut to the last max_length tokens)

Truncation keeps the end of the text (the completion being judged) and sets `truncated`. A huge text
is cut to `max_length * MAX_CHARS_PER_TOKEN` characters before it is tokenised, so tokenising costs
at most that much whatever the caller sent. Items are sorted by length and run `batch_size` at a time
(little padding); a batch that runs out of memory is split in halves down to single items, so an
item too large for the device fails alone with "out of memory" and its neighbours are scored.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

logger = logging.getLogger(__name__)

MAX_CHARS_PER_TOKEN = 32


@dataclass(frozen=True)
class ScoredText:
    """One item's result: its reward (None when it failed), whether it was cut, and why it failed."""

    reward: float | None
    truncated: bool = False
    error: str = ""


def format_pair(tokenizer: PreTrainedTokenizerBase, prompt: str, completion: str) -> str:
    """The text the model reads: through the chat template when the tokenizer has one."""
    if getattr(tokenizer, "chat_template", None):
        messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": completion}]
        return str(tokenizer.apply_chat_template(messages, tokenize=False))
    return prompt + completion


def encode(tokenizer: PreTrainedTokenizerBase, text: str, max_length: int) -> tuple[list[int], bool]:
    """The last `max_length` token ids of `text` and whether anything was cut."""
    limit = max_length * MAX_CHARS_PER_TOKEN
    clipped = len(text) > limit
    ids = tokenizer(text[-limit:] if clipped else text, add_special_tokens=False).input_ids
    return ids[-max_length:], clipped or len(ids) > max_length


def is_out_of_memory(error: BaseException) -> bool:
    return isinstance(error, MemoryError | torch.OutOfMemoryError) or "out of memory" in str(error).lower()


def split_on_oom(
    forward: Callable[[Sequence[list[int]]], list[float]], rows: Sequence[list[int]]
) -> list[float | None]:
    """`forward(rows)`, halving the batch on out-of-memory; a single row that still fails is None."""
    try:
        return list(forward(rows))
    except Exception as error:
        if not is_out_of_memory(error):
            raise
        if len(rows) == 1:
            logger.warning("one item of %d tokens ran out of memory alone", len(rows[0]))
            return [None]
        half = len(rows) // 2
        return split_on_oom(forward, rows[:half]) + split_on_oom(forward, rows[half:])


def forward_rows(model: PreTrainedModel, pad_id: int, device: str, rows: Sequence[list[int]]) -> list[float]:
    """One padded forward pass (right padding; the classifier reads the last non-pad token)."""
    width = max(len(row) for row in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention = torch.zeros_like(ids)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        attention[i, : len(row)] = 1
    with torch.inference_mode():
        logits = model(input_ids=ids.to(device), attention_mask=attention.to(device)).logits
    return [float(value) for value in logits[:, 0].float().cpu()]


def score_pairs(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    pairs: Sequence[tuple[str, str]],
    *,
    max_length: int,
    batch_size: int,
    device: str,
) -> list[ScoredText]:
    """Every (prompt, completion) scored, in input order (see the module docstring)."""
    encoded = [encode(tokenizer, format_pair(tokenizer, p, c), max_length) for p, c in pairs]
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i][0]))
    rewards: list[float | None] = [None] * len(encoded)
    pad_id = model.config.pad_token_id
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        rows = [encoded[i][0] or [pad_id] for i in chunk]
        scored = split_on_oom(lambda r: forward_rows(model, pad_id, device, r), rows)
        for i, reward in zip(chunk, scored, strict=True):
            rewards[i] = reward
    return [
        ScoredText(reward, truncated, "" if reward is not None else "out of memory")
        for reward, (_, truncated) in zip(rewards, encoded, strict=True)
    ]
