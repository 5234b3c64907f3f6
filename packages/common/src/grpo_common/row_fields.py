"""A row's fields (grpo.v1.Prompt.fields_json, ScoreItem.fields_json) checked and parsed in one place,
for every edge: the reward service checks each item, and the rollout service checks each prompt before
it generates, so a row the reward service would refuse never costs a generation.

The text must be one JSON object of at most `max_bytes` bytes of UTF-8 whose nesting is at most
`max_depth` deep, with finite numbers and no key a task argument already takes (`completion`,
`reference`). Parsing is linear: the size is checked before `json.loads`, the depth after it by an explicit
walk (json's own recursion guard turns anything deeper than Python's recursion limit into an error first).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

DEFAULT_MAX_BYTES = 1 << 20
DEFAULT_MAX_DEPTH = 32
_RESERVED = ("completion", "reference")


class InvalidFields(ValueError):
    """fields_json that a task must not receive; the message says what is wrong (without the field name)."""


@dataclass(frozen=True)
class FieldLimits:
    """How large and how deep a row's fields may be."""

    max_bytes: int = DEFAULT_MAX_BYTES
    max_depth: int = DEFAULT_MAX_DEPTH


def _refuse_constant(name: str) -> float:
    raise InvalidFields(f"{name} is not a finite number")


def _finite_float(text: str) -> float:
    value = float(text)
    if value != value or value in (float("inf"), float("-inf")):
        raise InvalidFields(f"{text[:40]} is not a finite number")
    return value


def _depth(value: Any) -> int:
    """Nesting depth of parsed JSON (a scalar is 0, `{}` is 1), walked without recursion."""
    deepest = 0
    stack = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        deepest = max(deepest, depth + 1)
        stack.extend((child, depth + 1) for child in children)
    return deepest


def parse_fields(text: str, limits: FieldLimits) -> dict[str, Any]:
    """The fields as a dict ("" is no fields); InvalidFields saying what is wrong otherwise."""
    if not text:
        return {}
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > limits.max_bytes:
        raise InvalidFields(f"is {size} bytes, over this server's limit of {limits.max_bytes}")
    try:
        value = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except RecursionError:
        raise InvalidFields(f"is nested deeper than {limits.max_depth} levels") from None
    except ValueError as error:  # JSONDecodeError, and int() of a number over Python's digit limit
        if isinstance(error, InvalidFields):
            raise
        raise InvalidFields(f"is not valid JSON: {error}") from None
    if not isinstance(value, dict):
        raise InvalidFields(f"must be a JSON object, not {type(value).__name__}")
    if _depth(value) > limits.max_depth:
        raise InvalidFields(f"is nested deeper than {limits.max_depth} levels")
    for key in _RESERVED:
        if key in value:
            raise InvalidFields(f"must not contain the key {key!r} (the task receives it separately)")
    return value
