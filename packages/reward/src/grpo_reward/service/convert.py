"""The one place where grpo.v1 reward messages become package types and back.

Everything a request carries is checked here, before any work: ids, references, task names (looked up
among the tasks this server knows, never imported), fields_json (`grpo_common.row_fields`) and the
spec (`grpo_reward.spec.RewardSpec`, which also refuses weights whose sum cannot be represented).
"""

from __future__ import annotations

from typing import Any

from grpo.v1 import reward_pb2
from grpo_common.registry import UnknownName
from grpo_common.row_fields import FieldLimits, InvalidFields, parse_fields
from pydantic import ValidationError

from grpo_reward.spec import RewardSpec
from grpo_reward.tasks.batched import check_task_name
from grpo_reward.verdict import Verdict
from grpo_reward.verifier import DEFAULT_TASK, Item


class InvalidRequest(ValueError):
    """A request the service refuses with INVALID_ARGUMENT; the message names the item index and field."""


MAX_TASK_NAME_CHARS = 200
_V1_FIELDS = ("format_weight", "length_weight", "max_completion_tokens", "overlong_buffer_tokens")
_COMPONENT_FIELDS = ("name", "max_completion_tokens", "overlong_buffer_tokens")


def _location(parts: tuple[Any, ...]) -> str:
    """("components", 2, "weight") -> "components[2].weight"."""
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text


def _spec_values(message: reward_pb2.RewardSpec) -> dict[str, Any]:
    values: dict[str, Any] = {"fallback_last_number": message.fallback_last_number}
    if message.components:
        values["components"] = [
            {
                **{name: getattr(component, name) for name in _COMPONENT_FIELDS},
                "weight": component.weight if component.HasField("weight") else 1.0,
                "origin": f"components[{index}]",
            }
            for index, component in enumerate(message.components)
        ]
        return values
    values.update({name: getattr(message, name) for name in _V1_FIELDS})
    # proto3 trap: a present spec with correctness_weight unset means 1, not 0
    present = message.HasField("correctness_weight")
    values["correctness_weight"] = message.correctness_weight if present else 1.0
    return values


def spec_from_proto(request: reward_pb2.ScoreRequest, default_timeout_s: float) -> RewardSpec:
    """The request's RewardSpec: an absent spec means the defaults; timeout_s 0 means the server default."""
    if not request.HasField("spec"):
        return RewardSpec(timeout_s=default_timeout_s)
    values = _spec_values(request.spec)
    values["timeout_s"] = request.spec.timeout_s if request.spec.timeout_s != 0 else default_timeout_s
    try:
        return RewardSpec(**values)
    except ValidationError as error:
        problems = []
        for problem in error.errors():
            cause = problem.get("ctx", {}).get("error")
            message = str(cause) if cause is not None else problem["msg"]
            where = _location(tuple(problem["loc"]))
            problems.append(f"spec.{where}: {message}" if where else f"spec.{message}")
        raise InvalidRequest("; ".join(problems)) from None


def items_from_proto(request: reward_pb2.ScoreRequest, max_items: int, limits: FieldLimits) -> list[Item]:
    """The request's items; InvalidRequest for the first bad one (empty or duplicate id, empty reference,
    unknown task, bad fields_json, negative completion_tokens)."""
    if len(request.items) > max_items:
        raise InvalidRequest(
            f"items: {len(request.items)} items exceed this server's limit of {max_items}; split the batch"
        )
    seen: dict[str, int] = {}
    items = []
    for index, item in enumerate(request.items):
        if not item.id:
            raise InvalidRequest(f"items[{index}].id is empty; give every item a unique id")
        if item.id in seen:
            raise InvalidRequest(f"items[{index}].id {item.id[:80]!r} duplicates items[{seen[item.id]}].id")
        seen[item.id] = index
        if not item.reference.strip():
            raise InvalidRequest(f"items[{index}].reference is empty; give the ground-truth answer")
        task = item.task or DEFAULT_TASK
        if len(task) > MAX_TASK_NAME_CHARS:
            raise InvalidRequest(f"items[{index}].task is longer than {MAX_TASK_NAME_CHARS} characters")
        try:
            check_task_name(task)
        except UnknownName as error:
            raise InvalidRequest(f"items[{index}].task: {error}") from None
        if item.completion_tokens < 0:
            raise InvalidRequest(f"items[{index}].completion_tokens is negative")
        try:
            fields = parse_fields(item.fields_json, limits)
        except InvalidFields as error:
            raise InvalidRequest(f"items[{index}].fields_json {error}") from None
        items.append(Item(item.completion, item.reference, task, fields, item.prompt))
    return items


def result_to_proto(item_id: str, verdict: Verdict) -> reward_pb2.ScoreResult:
    """A ScoreResult carrying the verdict (extracted left unset when nothing was found)."""
    result = reward_pb2.ScoreResult(
        id=item_id,
        reward=verdict.reward,
        correct=verdict.correct,
        reason=verdict.reason,
        timed_out=verdict.timed_out,
    )
    if verdict.extracted is not None:
        result.extracted = verdict.extracted
    result.components.update(verdict.components)
    return result
