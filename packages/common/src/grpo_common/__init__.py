"""grpo-common: what every GRPO service shares.

- `grpo.v1` (a sibling package in this distribution): stubs generated from proto/grpo/v1.
- `grpo_common.server`: a grpc.aio server with health, reflection, limits, TLS, auth, graceful shutdown.
- `grpo_common.channel`: client channels with deadlines, retries for idempotent calls, keepalive, TLS, auth.
- `grpo_common.security`: TLS credentials and the shared-token auth interceptors.
- `grpo_common.weights`: the weight codec, a state dict <-> a stream of `grpo.v1.WeightChunk` buckets
  (import from `grpo_common.weights.codec`; needs torch; `grpo_common.weight_codec` still works).
- `grpo_common.sandbox`: runs untrusted programs under limits.
- `grpo_common.config`: typed configuration from a TOML/YAML file, environment variables and CLI flags.
- `grpo_common.logging_setup`: one logging format for every process.
"""
