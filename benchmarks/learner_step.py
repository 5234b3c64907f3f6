"""Throughput of one GRPO update (forward + backward + AdamW step) on CPU, with a FLOP/s estimate.

    uv run python benchmarks/learner_step.py [--steps 2] [--sizes tiny,100m] [--threads N]

For a tiny and a ~100M-parameter Qwen2-shaped model (built from a config, random weights) it times
`Trainer.update` on a fixed synthetic batch and reports tokens/s (prompt + completion tokens per
second of update) and an estimate of achieved FLOP/s, next to the FLOP/s of a plain fp32 torch
matmul measured in the same run (the practical ceiling of this machine). Prints machine info first.

FLOP model per update (T = all tokens, Tc = completion tokens, S = padded row length):
  6 * N_nonembedding * T                      dense layers, forward + backward
  8 * V * d * Tc                              lm_head on completion positions only (fwd, recompute, bwd)
  12 * L * d * S * T                          attention scores and values, forward + backward
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass

import torch
from grpo_learner.config import LearnerConfig, OptimConfig
from grpo_learner.optim import build_optimizer, build_scheduler
from grpo_learner.synthetic import synthetic_groups
from grpo_learner.update import Trainer, UpdateSettings, prepare_batch
from model_shapes import SHAPES, ModelShape, machine_description  # benchmarks/model_shapes.py
from transformers import AutoModelForCausalLM


@dataclass(frozen=True)
class Workload:
    """The synthetic batch one update trains on, per model shape."""

    groups: int
    group_size: int
    completion: tuple[int, int]  # completion length range


WORKLOADS = {
    "tiny": Workload(8, 8, (24, 64)),
    "small": Workload(8, 8, (24, 64)),
    "100m": Workload(4, 4, (32, 64)),
}


def matmul_flops(n: int = 1024, repeats: int = 10) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    start = time.perf_counter()
    for _ in range(repeats):
        torch.mm(a, b)
    return 2 * n**3 * repeats / (time.perf_counter() - start)


def build(size: ModelShape) -> torch.nn.Module:
    config = size.qwen2_config(attn_implementation="sdpa")
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config, dtype=torch.float32).train()


def run(size: ModelShape, work: Workload, steps: int, micro_batch_size: int) -> None:
    model = build(size)
    params = sum(p.numel() for p in model.parameters())
    embedding = size.vocab * size.hidden
    config = LearnerConfig.model_validate(
        {
            "model": {"name_or_path": size.name},
            "loss": {"loss_type": "dapo"},
            "train": {"micro_batch_size": micro_batch_size},
            "rollout": {"sampling": {"max_new_tokens": 64}},
        }
    )
    settings = UpdateSettings.from_config(config)
    optimizer = build_optimizer(model, OptimConfig(lr=1e-5))
    trainer = Trainer(model, optimizer, build_scheduler(optimizer, OptimConfig(lr=1e-5), 100), settings)
    groups = synthetic_groups(
        0,
        num_groups=work.groups,
        group_size=work.group_size,
        vocab_size=size.vocab,
        prompt_length=(16, 48),
        completion_length=work.completion,
    )
    batch = prepare_batch(groups, settings, torch.device("cpu"))
    tokens = sum(int(mb.attention_mask.sum()) for mb in batch.micro_batches)
    completion_tokens = sum(mb.num_tokens for mb in batch.micro_batches)
    attention = sum(
        12 * size.layers * size.hidden * mb.input_ids.shape[1] * int(mb.attention_mask.sum())
        for mb in batch.micro_batches
    )
    flops = 6 * (params - embedding) * tokens + 8 * embedding * completion_tokens + attention
    trainer.update(groups)  # warm-up
    runs = []
    for _ in range(steps):
        start = time.perf_counter()
        metrics = trainer.update(groups)
        runs.append((time.perf_counter() - start, metrics))
    best, metrics = min(runs, key=lambda run: run[0])
    split = " / ".join(f"{metrics[f'timing/{phase}']:.3f}" for phase in ("forward", "backward", "optimizer"))
    print(
        f"{size.name:>5}: {params / 1e6:6.1f}M params, {len(groups) * work.group_size} sequences, "
        f"{tokens} tokens ({completion_tokens} completion), micro-batch {micro_batch_size}: "
        f"update {best:.3f} s (best of {steps}; forward / backward / optimizer {split} s) -> "
        f"{tokens / best:,.0f} tokens/s, ~{flops / best / 1e9:.1f} GFLOP/s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--sizes", default="tiny,100m")
    # On a shared box, more torch threads than free cores is far slower (threads spin-wait).
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--micro-batch-size", type=int, default=8)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(machine_description(f"{torch.get_num_threads()} threads"))
    print(f"plain fp32 matmul (1024^3): {matmul_flops() / 1e9:.1f} GFLOP/s")
    for name in args.sizes.split(","):
        run(SHAPES[name], WORKLOADS[name], args.steps, args.micro_batch_size)
    print(f"plain fp32 matmul again:    {matmul_flops() / 1e9:.1f} GFLOP/s")


if __name__ == "__main__":
    main()
