"""Name the field of a raw ScoreRequest that protobuf refused (e.g. invalid UTF-8) in the error.

The walk over the wire format is grpo_common.request_decoding's, guided by the message descriptor,
so it names nested and repeated fields ("items[3].completion") without field numbers written here.
"""

from __future__ import annotations

from grpo.v1 import reward_pb2
from grpo_common.request_decoding import describe_undecodable


def locate_invalid_utf8(data: bytes) -> str:
    """E.g. "items[3].completion is not valid UTF-8; ...", or what else is malformed about the bytes."""
    return describe_undecodable(data, reward_pb2.ScoreRequest.DESCRIPTOR)
