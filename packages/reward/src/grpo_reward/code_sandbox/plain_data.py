"""Decode a value the sandboxed harness reported into plain built-in Python data, or refuse it.

The harness (`harness.py`) writes scalars as JSON scalars and containers tagged by type, e.g.
`{"tuple": [1, {"list": ["a"]}]}`, `{"dict": [[key, value], ...]}`, `{"bytes": "00ff"}`. Decoding here, in the
service, builds only exact built-in objects (None, bool, int, float, complex, str, bytes, list, tuple,
set, frozenset, dict), so whatever the untrusted program did, the comparison that decides its verdict runs
on data whose `==` is Python's own.
"""

from __future__ import annotations

from typing import Any

MAX_DEPTH = 64  # harness.MAX_DEPTH
_SEQUENCES = {"list": list, "tuple": tuple, "set": set, "frozenset": frozenset}


class NotPlainData(ValueError):
    """The reported value is not in the harness's encoding (so the program's answer is wrong)."""


def decode(encoded: Any, depth: int = 0) -> Any:
    """The plain value `encoded` stands for; NotPlainData for anything outside the encoding."""
    if depth > MAX_DEPTH:
        raise NotPlainData(f"nested deeper than {MAX_DEPTH}")
    if encoded is None or type(encoded) in (bool, int, float, str):
        return encoded
    if type(encoded) is not dict or len(encoded) != 1:
        raise NotPlainData(f"unexpected {type(encoded).__name__} in a reported value")
    ((tag, payload),) = encoded.items()
    try:
        if tag in _SEQUENCES and type(payload) is list:
            return _SEQUENCES[tag](decode(item, depth + 1) for item in payload)
        if tag == "dict" and type(payload) is list:
            return {decode(key, depth + 1): decode(value, depth + 1) for key, value in payload}
        if tag == "bytes" and type(payload) is str:
            return bytes.fromhex(payload)
        if tag == "complex" and type(payload) is list and len(payload) == 2:
            real, imag = (decode(part, depth + 1) for part in payload)
            if type(real) is float and type(imag) is float:
                return complex(real, imag)
    except (TypeError, ValueError) as error:  # an unhashable set member or dict key, bad hex, a bad pair
        raise NotPlainData(f"bad {tag}: {error}") from None
    raise NotPlainData(f"unknown tag {tag!r}")
