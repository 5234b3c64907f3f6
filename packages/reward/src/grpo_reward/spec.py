"""Reward components and how a RewardSpec weighs them (the semantics of grpo.v1.RewardSpec).

    reward = sum_k weight_k * term_k        over the spec's components k

Terms:
- correctness: the item's task reward (math: 1 if the extracted answer equals the reference, else 0).
- format: the task's `format` sub-score: 1 if a final answer was given in an explicit form
  (\\boxed{}, "####", "The answer is", ...), else 0.
- length: DAPO's soft overlong punishment. With L = completion tokens, L_max = max_completion_tokens and
  B = overlong_buffer_tokens: 0 for L <= L_max - B, (L_max - B - L) / B for L_max - B < L <= L_max,
  and -1 beyond L_max. Unknown length (0 tokens) is never penalised.
- any other name: the reward of the task of that name (a built-in, a loaded plugin, an entry point, or a
  reward model or judge the operator configured) on the same completion, reference and fields. Its
  own sub-scores (e.g. a reward model's `truncated`, `latency_s`) are reported as `<name>/<sub-score>`.

Without explicit components the v1.0 weights apply: correctness (weight correctness_weight, 1 when absent),
format (format_weight, when non-zero), length (length_weight, when non-zero). An item that timed out in
any of its tasks has reward 0, no components and `timed_out` set.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from grpo_common.registry import MAX_NAME_CHARS
from grpo_common.reward_terms import (
    BUILT_IN_TERMS,
    CORRECTNESS,
    LENGTH,
    MAX_SCORE_TIMEOUT_S,
    V1_WEIGHT_FIELDS,
)
from pydantic import BaseModel, ConfigDict, Field, model_validator

from grpo_reward.tasks.batched import check_task_name
from grpo_reward.terms import TERMS
from grpo_reward.terms import overlong_penalty as overlong_penalty  # its old home
from grpo_reward.verdict import Verdict, timed_out

MAX_TIMEOUT_S = MAX_SCORE_TIMEOUT_S
_V1_TOKENS = ("max_completion_tokens", "overlong_buffer_tokens")
_V1_WEIGHTS = V1_WEIGHT_FIELDS


def _check_token_budget(max_tokens: Any, buffer_tokens: Any) -> None:
    """Refuse a negative budget or a buffer longer than the budget, naming the field.

    Checked even when no length term uses them: a spec that says `max_completion_tokens = -1` is a
    mistake the caller should hear about, not a value silently ignored.
    """
    for name, value in (("max_completion_tokens", max_tokens), ("overlong_buffer_tokens", buffer_tokens)):
        if isinstance(value, int) and value < 0:
            raise ValueError(f"{name}: must be >= 0, got {value}")
    if isinstance(max_tokens, int) and isinstance(buffer_tokens, int) and buffer_tokens > max_tokens:
        raise ValueError(
            f"overlong_buffer_tokens: {buffer_tokens} exceeds max_completion_tokens {max_tokens}; "
            "the buffer is the last part of the budget, so it must not be longer than the budget"
        )


class Component(BaseModel):
    """One weighted term; `origin` is the request field it came from (for error messages only)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=MAX_NAME_CHARS)
    weight: float = Field(1.0, allow_inf_nan=False)
    max_completion_tokens: int = Field(0, ge=0)
    overlong_buffer_tokens: int = Field(0, ge=0)
    origin: str = ""

    @model_validator(mode="before")
    @classmethod
    def _token_budget(cls, values: Any) -> Any:
        """Whatever the component's name, a token budget it carries must make sense (named per field)."""
        if isinstance(values, dict):
            _check_token_budget(
                values.get("max_completion_tokens", 0), values.get("overlong_buffer_tokens", 0)
            )
        return values

    @model_validator(mode="after")
    def _known_and_complete(self) -> Component:
        if self.name == LENGTH:
            if self.max_completion_tokens <= 0:
                raise ValueError("max_completion_tokens: the length term needs max_completion_tokens > 0")
        elif self.name not in BUILT_IN_TERMS:
            check_task_name(self.name)  # UnknownName is a ValueError: refused
        return self


class RewardSpec(BaseModel):
    """Which components count and how much; the defaults are those of an absent spec (plain correctness).

    Built from `components`, or from the v1.0 keywords correctness_weight / format_weight / length_weight /
    max_completion_tokens / overlong_buffer_tokens when no components are given.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    components: tuple[Component, ...] = (Component(name=CORRECTNESS, origin=V1_WEIGHT_FIELDS[CORRECTNESS]),)
    fallback_last_number: bool = False
    timeout_s: float = Field(
        1.0, gt=0, le=MAX_TIMEOUT_S, allow_inf_nan=False, description="per-item CPU-time limit"
    )

    @model_validator(mode="before")
    @classmethod
    def _from_v1_weights(cls, values: Any) -> Any:
        """The v1.0 weight keywords as components (absent correctness_weight means 1)."""
        if not isinstance(values, dict) or not any(
            key in values for key in (*_V1_WEIGHTS.values(), *_V1_TOKENS)
        ):
            return values
        values = dict(values)
        if values.get("components"):
            raise ValueError("give either components or the v1.0 weights, not both")
        tokens = {
            "max_completion_tokens": values.pop("max_completion_tokens", 0),
            "overlong_buffer_tokens": values.pop("overlong_buffer_tokens", 0),
        }
        _check_token_budget(tokens["max_completion_tokens"], tokens["overlong_buffer_tokens"])
        components = []
        for name, key in _V1_WEIGHTS.items():
            weight = values.pop(key, 1.0 if name == CORRECTNESS else 0.0)
            if not isinstance(weight, int | float) or not math.isfinite(weight):
                raise ValueError(f"{key}: must be a finite number, got {weight!r}")
            if name == CORRECTNESS or weight != 0:
                extra = tokens if name == LENGTH else {}
                components.append({"name": name, "weight": weight, "origin": key, **extra})
        values["components"] = components
        return values

    @model_validator(mode="after")
    def _representable(self) -> RewardSpec:
        """Names unique; the weights' absolute sum finite, so no reward of terms in [-1, 1] overflows."""
        seen: set[str] = set()
        total = 0.0
        for index, component in enumerate(self.components):
            where = component.origin or f"components[{index}]"
            if component.name in seen:
                raise ValueError(f"{where}: the component {component.name!r} appears twice")
            seen.add(component.name)
            total += abs(component.weight)
            if not math.isfinite(total):
                raise ValueError(
                    f"{where}: the weights' sum cannot be represented (overflows at weight "
                    f"{component.weight:g}); keep the sum of |weight| below 1e308"
                )
        return self

    @property
    def task_terms(self) -> tuple[str, ...]:
        """Components that are reward tasks of their own (graded as separate items)."""
        return tuple(c.name for c in self.components if c.name not in BUILT_IN_TERMS)


def _term(component: Component, verdict: Verdict, terms: Mapping[str, Verdict], tokens: int) -> float:
    if component.name in BUILT_IN_TERMS:
        return TERMS[component.name](component, verdict, tokens)
    return terms[component.name].reward


def apply_spec(
    verdict: Verdict, spec: RewardSpec, completion_tokens: int = 0, terms: Mapping[str, Verdict] | None = None
) -> Verdict:
    """The item's verdict with its reward and components computed under `spec`.

    `verdict` is the item's own task's; `terms` the verdicts of the tasks named as components. The task's
    sub-scores that are not built-in term names (e.g. code's tests_passed) are reported as they are.
    """
    terms = terms or {}
    if verdict.timed_out:
        return replace(verdict, reward=0.0, components={})
    for name, term in terms.items():
        if term.timed_out:
            return timed_out(f"component {name!r}: {term.reason}", verdict.extracted)
    components = {name: v for name, v in verdict.components.items() if name not in BUILT_IN_TERMS}
    for name, term in terms.items():
        components.update(
            {f"{name}/{sub}": value for sub, value in term.components.items() if sub not in BUILT_IN_TERMS}
        )
    reward = 0.0
    for component in spec.components:
        value = _term(component, verdict, terms, completion_tokens)
        components[component.name] = value
        reward += component.weight * value
    if not math.isfinite(reward):  # a task's reward times its weight overflowed: the task's fault, one item
        return replace(verdict, reward=0.0, components=components, reason="the weighted reward overflowed")
    return replace(verdict, reward=reward, components=components)
