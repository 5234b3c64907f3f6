"""The result of one verification: the value object every layer (library, CLI, gRPC) passes around."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Verdict:
    """Whether a completion's final answer equals the reference, and why.

    `reward` is the task's reward (1.0 or 0.0 for math) unless a reward spec combined several components;
    `components` then holds each component before weighting. `extracted` is the answer text found in the
    completion (None when none was found); `reason` says in words how the decision was reached.
    `timed_out` marks an item that ran past its time limit or whose worker died: its reward and
    correctness say nothing about the answer.
    """

    correct: bool
    reward: float
    extracted: str | None
    reason: str
    components: dict[str, float] = field(default_factory=dict)
    timed_out: bool = False

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (used by the CLI)."""
        return asdict(self)


def failed(reason: str, extracted: str | None = None) -> Verdict:
    """A not-correct verdict with zero reward."""
    return Verdict(correct=False, reward=0.0, extracted=extracted, reason=reason)


def timed_out(reason: str, extracted: str | None = None) -> Verdict:
    """A verdict that carries no information about the answer: the item ran out of time or its worker died."""
    return Verdict(correct=False, reward=0.0, extracted=extracted, reason=reason, timed_out=True)
