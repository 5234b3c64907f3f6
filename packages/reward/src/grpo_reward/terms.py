"""`TERMS`: the built-in reward terms, one function each (their names: `grpo_common.reward_terms`).

A term turns an item's verdict into one number of `reward = sum_k weight_k * term_k`; any other
component name is a reward task of its own, graded as a separate item (see spec.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from grpo_common.registry import Registry
from grpo_common.reward_terms import CORRECTNESS, FORMAT, LENGTH

from grpo_reward.verdict import Verdict

if TYPE_CHECKING:
    from grpo_reward.spec import Component

TermFn = Callable[["Component", Verdict, int], float]  # (component, the item's verdict, completion tokens)
TERMS: Registry[TermFn] = Registry("reward term")


@TERMS.register(CORRECTNESS)
def correctness(component: Component, verdict: Verdict, tokens: int) -> float:
    """The item's task reward (math: 1 if the extracted answer equals the reference, else 0)."""
    return verdict.reward


@TERMS.register(FORMAT)
def answer_format(component: Component, verdict: Verdict, tokens: int) -> float:
    """The task's `format` sub-score: 1 if a final answer was given in an explicit form, else 0."""
    return verdict.components.get(FORMAT, 0.0)


@TERMS.register(LENGTH)
def length(component: Component, verdict: Verdict, tokens: int) -> float:
    """DAPO's soft overlong punishment of the completion's `tokens` (formula: `overlong_penalty`)."""
    return overlong_penalty(tokens, component.max_completion_tokens, component.overlong_buffer_tokens)


def overlong_penalty(tokens: int, max_tokens: int, buffer_tokens: int) -> float:
    """DAPO soft overlong punishment in [-1, 0].

    With L = tokens, L_max = max_tokens and B = buffer_tokens: 0 for L <= L_max - B,
    (L_max - B - L) / B for L_max - B < L <= L_max, and -1 beyond L_max. Unknown length (0 tokens)
    is never penalised.
    """
    if tokens <= 0 or max_tokens <= 0:
        return 0.0
    start = max_tokens - buffer_tokens
    if tokens <= start:
        return 0.0
    if tokens > max_tokens or buffer_tokens == 0:
        return -1.0
    return (start - tokens) / buffer_tokens
