"""Locate the string field that holds invalid UTF-8 in a raw ScoreRequest, to name it in the error.

protobuf refuses to decode such a message at all, so the only way to say *which* item and field is wrong is
to walk the wire format ourselves: ScoreRequest.items (field 1) are length-delimited ScoreItem messages whose
string fields are 1 id, 2 completion, 3 reference, 4 task.
"""

from __future__ import annotations

_ITEM_FIELDS = {1: "id", 2: "completion", 3: "reference", 4: "task"}


def _varint(data: bytes, position: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if position >= len(data) or shift > 63:
            raise ValueError("truncated varint")
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, position


def _fields(data: bytes):  # type: ignore[no-untyped-def]
    """(field number, wire type, payload or None) for each field of one message."""
    position = 0
    while position < len(data):
        key, position = _varint(data, position)
        number, wire_type = key >> 3, key & 7
        if wire_type == 0:
            _, position = _varint(data, position)
            yield number, wire_type, None
        elif wire_type == 1:
            position += 8
            yield number, wire_type, None
        elif wire_type == 2:
            length, position = _varint(data, position)
            yield number, wire_type, data[position : position + length]
            position += length
        elif wire_type == 5:
            position += 4
            yield number, wire_type, None
        else:
            raise ValueError(f"unsupported wire type {wire_type}")


def locate_invalid_utf8(data: bytes) -> str:
    """E.g. "items[3].completion is not valid UTF-8", or a general message for otherwise malformed bytes."""
    try:
        index = 0
        for number, wire_type, payload in _fields(data):
            if number != 1 or wire_type != 2 or payload is None:
                continue
            for item_number, item_type, value in _fields(payload):
                name = _ITEM_FIELDS.get(item_number)
                if name and item_type == 2 and value is not None:
                    try:
                        value.decode("utf-8")
                    except UnicodeDecodeError:
                        return f"items[{index}].{name} is not valid UTF-8; send text encoded as UTF-8"
            index += 1
    except ValueError:
        pass
    return "the request is not a valid grpo.v1.ScoreRequest (malformed protobuf or invalid UTF-8)"
