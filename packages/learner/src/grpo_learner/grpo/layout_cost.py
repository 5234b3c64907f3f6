"""Whether packing pays for a step: the decoder work of the packed and the padded layouts, compared.

Packing (packing.py) removes padding, but without a varlen kernel a packed row of width W is attended
densely: `W^2` (query, key) pairs per head and layer, where the padded layout attends each sequence
only over its own `Lp + T` positions. So packing wins on uneven completions (padding dominates) and
loses on many short, even ones (a 1024-token row of 10-token completions attends ~100 times more
pairs than the sequences need; measured: benchmarks/RESULTS.md, "Learner update against a plain
forward + backward"). The choice is made per step by counting, per layer of the decoder,

    cost = tokens x per_token + pairs x per_pair
    per_token = 2 (h q + 2 h kv + q h + 3 h i)      (q, k, v and o projections; a gated MLP)
    per_pair  = 2 x 2 q                              (q . k and the weighted sum of v, all heads)

with h the hidden size, q = heads x head_dim, kv = kv_heads x head_dim and i the MLP width; layers,
the lm_head and the loss are the same in both layouts and cancel. The layouts' counts:

    packed          R rows of width W (every row padded to the widest):   R W tokens,  R W^2 pairs
    padded, shared  P prompts of width Lp, then N completions of width T:
                    P Lp + N T tokens,   P Lp^2 + N T (Lp + T) pairs
    padded          N rows of Lp + T:    N (Lp + T) tokens,   N (Lp + T)^2 pairs

The step's decision is made from the whole batch, before it is sharded, so every rank of a
distributed learner takes the same layout (FSDP needs every rank to run the same forwards).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from grpo_learner.grpo.batching import TrainSequence


@dataclass(frozen=True)
class DecoderCost:
    """FLOPs per token and per attended (query, key) pair, per decoder layer (see the module doc)."""

    per_token: float
    per_pair: float

    @classmethod
    def of(cls, model_config: Any) -> DecoderCost:
        """From a transformers config (Llama, Qwen2, Mistral... names)."""
        hidden = model_config.hidden_size
        heads = model_config.num_attention_heads
        kv_heads = getattr(model_config, "num_key_value_heads", None) or heads
        head_dim = getattr(model_config, "head_dim", None) or hidden // heads
        width = getattr(model_config, "intermediate_size", None) or 4 * hidden
        q, kv = heads * head_dim, kv_heads * head_dim
        return cls(
            per_token=2.0 * (hidden * q + 2 * hidden * kv + q * hidden + 3 * hidden * width), per_pair=4.0 * q
        )

    def cost(self, tokens: float, pairs: float) -> float:
        return tokens * self.per_token + pairs * self.per_pair


def padded_cost(sequences: Sequence[TrainSequence], share_prompts: bool, cost: DecoderCost) -> float:
    """One micro-batch in the padded layout (shared prompts or not: logprobs._completion_hidden)."""
    prompts = {s.prompt_ids for s in sequences}
    prompt_width = max(len(p) for p in prompts)
    width = max(len(s.completion_ids) for s in sequences)
    n = len(sequences)
    if share_prompts:
        tokens = len(prompts) * prompt_width + n * width
        pairs = len(prompts) * prompt_width**2 + n * width * (prompt_width + width)
        return cost.cost(tokens, pairs)
    return cost.cost(n * (prompt_width + width), n * (prompt_width + width) ** 2)


def packed_cost(sequences: Sequence[TrainSequence], row_tokens: int, cost: DecoderCost) -> float:
    """One micro-batch packed (an estimate of packing.py's rows from lengths alone): each group a
    segment `prompt + its completions`, rows of at most `row_tokens` dealt evenly, the widest row
    at least the longest segment that fits a row."""
    segments: dict[tuple[int, ...], int] = {}
    for s in sequences:
        segments[s.prompt_ids] = segments.get(s.prompt_ids, len(s.prompt_ids)) + len(s.completion_ids)
    total = sum(segments.values())
    rows = max(1, math.ceil(total / row_tokens))
    width = max(math.ceil(total / rows), min(row_tokens, max(segments.values())))
    return cost.cost(rows * width, rows * width**2)


def packing_pays(
    micro_batches: Sequence[Sequence[TrainSequence]], row_tokens: int, share_prompts: bool, cost: DecoderCost
) -> bool:
    """True when the step's micro-batches cost less packed than padded (see the module doc)."""
    packed = sum(packed_cost(mb, row_tokens, cost) for mb in micro_batches)
    padded = sum(padded_cost(mb, share_prompts, cost) for mb in micro_batches)
    return packed < padded
