"""The math of one GRPO update: pure functions and the trainer that applies them to a batch.

advantages    group rewards -> advantages (a registry of estimators, `loss.advantage.scaling`)
losses        the policy losses (a registry keyed by `loss.loss_type`), sampler-mismatch weights
logprobs      per-token log-probabilities and entropy, chunked over the vocabulary projection
batching      groups -> training sequences -> micro-batches that compute each prompt once
packing       a micro-batch's groups laid end to end in rows without padding
layout_cost   whether packing a step computes less than padding it (train.packing = "auto")
update        `Trainer`: one GRPO update (old/reference logprobs, mu passes, clipping)
optim         AdamW and the learning-rate schedule
nonfinite     stop at the first update that leaves non-finite gradients or parameters
parallelism   the three places where one update differs between one process and many
"""
