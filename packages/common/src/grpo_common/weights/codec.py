"""A `{name: tensor}` state dict <-> a stream of `grpo.v1.WeightChunk` buckets. No pickle.

Why buckets: one RPC per parameter costs a round trip each (hundreds for a real model), one
message for the whole model exceeds any sane message limit. A bucket packs many small tensors
into one message up to `bucket_bytes`; a tensor bigger than that is split into consecutive pieces.
Every tensor travels as its raw row-major bytes with dtype and shape, and a CRC-32 of all its
bytes on the piece that completes it. The final chunk carries totals, so a truncated stream is
detected. The decoder builds fresh tensors and hands them over only when the whole stream has
verified, so a receiver that applies the result never ends up half-updated.

What a receiver is protected from: a stream that claims tensors its model does not have (with
`expected`, refused at the first piece, before any memory is claimed; memory is committed only as
bytes arrive), and floating tensors holding NaN or infinities (one diverged learner step would
otherwise become every rollout's weights; refused unless `allow_non_finite`).

The halves live in `encoder` (sender), `decoder` (receiver) and `specs`
(dtypes, spec checks, the error); this module is the one place callers import them from.
"""

from __future__ import annotations

from grpo_common.weights.decoder import DecodedWeights, WeightStreamDecoder, decode_stream, read_weight_chunk
from grpo_common.weights.encoder import (
    DEFAULT_BUCKET_BYTES,
    UPDATE_WEIGHTS_METHOD,
    encode_chunk_views,
    encode_state_dict,
    encode_state_dict_wire,
    update_weights_method,
)
from grpo_common.weights.specs import (
    DTYPE_NAMES,
    DTYPES,
    TensorLike,
    WeightStreamError,
    check_compatible,
    check_spec,
    dtype_name,
)

__all__ = [
    "DEFAULT_BUCKET_BYTES",
    "DTYPES",
    "DTYPE_NAMES",
    "UPDATE_WEIGHTS_METHOD",
    "DecodedWeights",
    "TensorLike",
    "WeightStreamDecoder",
    "WeightStreamError",
    "check_compatible",
    "check_spec",
    "decode_stream",
    "dtype_name",
    "encode_chunk_views",
    "encode_state_dict",
    "encode_state_dict_wire",
    "read_weight_chunk",
    "update_weights_method",
]
