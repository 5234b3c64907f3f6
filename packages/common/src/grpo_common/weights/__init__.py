"""The weight codec: a `{name: tensor}` state dict <-> a stream of `grpo.v1.WeightChunk` buckets.

Import the public names from `grpo_common.weights.codec` (needs the `tensors` extra: torch).
This package itself imports nothing, so the server-side plumbing can read the wire format
(`wire`) without torch.

- `codec`: the one place callers import from (re-exports the halves below).
- `encoder`: the sender; a state dict -> chunks, bucketed up to `bucket_bytes`.
- `decoder`: the receiver; chunks -> verified tensors, handed over only when the whole stream checked.
- `specs`: dtypes, spec checks against the receiver's model, `WeightStreamError`.
- `wire`: the `WeightChunk` wire format read and written in place (no torch).
- `delta`: one tensor's change between two pushes as a small payload, and applying it bit-exactly.
- `fingerprint`: one number for the exact bits a set of tensors holds (xxh3 per tensor, combined).
- `receive_buffers`: memory for received tensors, committed only as bytes arrive.
- `allocator`: glibc malloc thresholds for bucket-sized churn.
"""
