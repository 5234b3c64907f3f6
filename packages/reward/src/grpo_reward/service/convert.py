"""The one place where grpo.v1 reward messages become package types and back."""

from __future__ import annotations

from grpo.v1 import reward_pb2
from pydantic import ValidationError

from grpo_reward.spec import RewardSpec
from grpo_reward.verdict import Verdict


class InvalidRequest(ValueError):
    """A request the service refuses with INVALID_ARGUMENT; the message names the item index and field."""


_SPEC_FIELDS = (
    "correctness_weight",
    "format_weight",
    "length_weight",
    "max_completion_tokens",
    "overlong_buffer_tokens",
    "fallback_last_number",
)


def spec_from_proto(request: reward_pb2.ScoreRequest, default_timeout_s: float) -> RewardSpec:
    """The request's RewardSpec: an absent spec means the defaults; timeout_s 0 means the server default."""
    if not request.HasField("spec"):
        return RewardSpec(timeout_s=default_timeout_s)
    message = request.spec
    values = {name: getattr(message, name) for name in _SPEC_FIELDS}
    values["timeout_s"] = message.timeout_s if message.timeout_s != 0 else default_timeout_s
    try:
        return RewardSpec(**values)
    except ValidationError as error:
        problems = "; ".join(
            f"spec.{'.'.join(str(part) for part in problem['loc']) or 'value'}: {problem['msg']}"
            for problem in error.errors()
        )
        raise InvalidRequest(problems) from None


def validate_items(request: reward_pb2.ScoreRequest, max_items: int) -> None:
    """Raise InvalidRequest for the first bad item: empty or duplicate id, empty reference, unknown task."""
    if len(request.items) > max_items:
        raise InvalidRequest(
            f"items: {len(request.items)} items exceed this server's limit of {max_items}; split the batch"
        )
    seen: dict[str, int] = {}
    for index, item in enumerate(request.items):
        if not item.id:
            raise InvalidRequest(f"items[{index}].id is empty; give every item a unique id")
        if item.id in seen:
            raise InvalidRequest(f"items[{index}].id {item.id[:80]!r} duplicates items[{seen[item.id]}].id")
        seen[item.id] = index
        if not item.reference.strip():
            raise InvalidRequest(f"items[{index}].reference is empty; give the ground-truth answer")
        if item.task not in ("", "math"):
            raise InvalidRequest(f"items[{index}].task {item.task[:40]!r} is unknown; use '' or 'math'")
        if item.completion_tokens < 0:
            raise InvalidRequest(f"items[{index}].completion_tokens is negative")


def result_to_proto(item_id: str, verdict: Verdict) -> reward_pb2.ScoreResult:
    """A ScoreResult carrying the verdict (extracted left unset when nothing was found)."""
    result = reward_pb2.ScoreResult(
        id=item_id, reward=verdict.reward, correct=verdict.correct, reason=verdict.reason
    )
    if verdict.extracted is not None:
        result.extracted = verdict.extracted
    result.components.update(verdict.components)
    return result
