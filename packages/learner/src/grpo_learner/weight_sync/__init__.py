"""Getting new weights to the rollout services: gRPC byte streams, or an NCCL group into SGLang."""
