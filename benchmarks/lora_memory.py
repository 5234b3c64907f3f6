"""Learner memory and update throughput: full fine-tuning vs LoRA, with and without a KL reference.

    uv run python benchmarks/lora_memory.py [--size 100m] [--rank 16] [--steps 2] [--threads N]

For each of full fine-tuning and LoRA (rank r on every linear layer of the decoder), at beta = 0 and
beta = 0.04, a fresh child process builds a Qwen2-shaped model from a config (random weights, fp32),
runs one warm-up `Trainer.update` and `--steps` timed ones on the same synthetic batch, and reports:

- peak resident memory of the process above what it held after its imports (`ru_maxrss`: weights
  + gradients + AdamW state + activations + the reference copy, which full fine-tuning needs for
  beta > 0 and LoRA does not: its reference is the same model with adapters disabled);
- update tokens/s (prompt + completion tokens per second of update, best of the timed steps);
- trainable parameters, and the bytes a bf16 weight push sends after the first one (full: every
  tensor; LoRA: the merged targeted tensors, `LoraLayout.changed_names`).

CPU only (the GPU figure would use torch.cuda.max_memory_allocated); a child process per case so one
case's allocations do not inflate the next one's peak.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import sys
import time

import torch
from grpo_learner.config import LearnerConfig, OptimConfig
from grpo_learner.config.lora import LoraConfig
from grpo_learner.data.synthetic import synthetic_groups
from grpo_learner.grpo.optim import build_optimizer, build_scheduler
from grpo_learner.grpo.update import Trainer
from grpo_learner.lora.adapters import add_adapters
from grpo_learner.lora.merged_weights import LoraLayout
from model_shapes import SHAPES, machine_description  # benchmarks/model_shapes.py
from results_file import Report, add_record_flag  # benchmarks/results_file.py
from transformers import AutoModelForCausalLM

SECTION = "LoRA memory and push size"  # of benchmarks/RESULTS.md, written with --record


def run_case(size: str, rank: int, beta: float, steps: int, threads: int, queue) -> None:
    torch.set_num_threads(threads)
    baseline_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # torch and friends imported
    shape = SHAPES[size]
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(
        shape.qwen2_config(attn_implementation="sdpa"), dtype=torch.float32
    )
    total = sum(p.numel() for p in model.parameters())
    reference = None
    if rank:
        model = add_adapters(model, LoraConfig(rank=rank))
        targeted = LoraLayout.of(model).merged_targeted(model.state_dict(), torch.bfloat16)
        push_bytes = sum(t.numel() * t.element_size() for t in targeted.values())
        del targeted
    else:
        push_bytes = 2 * total  # bf16, every tensor
        if beta > 0:
            reference = AutoModelForCausalLM.from_config(shape.qwen2_config(attn_implementation="sdpa"))
            reference.load_state_dict(model.state_dict())
            reference.eval().requires_grad_(False)
    model.train()
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    config = LearnerConfig.model_validate(
        {
            "model": {"name_or_path": size},
            "loss": {"loss_type": "dapo", "beta": beta},
            "train": {"micro_batch_size": 8},
            "rollout": {"sampling": {"max_new_tokens": 64}},
        }
    )
    optim = OptimConfig(lr=1e-5)
    optimizer = build_optimizer(model, optim)
    trainer = Trainer(model, optimizer, build_scheduler(optimizer, optim, 100), config, reference=reference)
    groups = synthetic_groups(
        0,
        num_groups=4,
        group_size=4,
        vocab_size=shape.vocab,
        prompt_length=(16, 48),
        completion_length=(32, 64),
    )
    tokens = sum(
        len(g.prompt_token_ids) * len(g.completions) + sum(len(c.token_ids) for c in g.completions)
        for g in groups
    )
    trainer.update(groups)  # warm-up: AdamW state allocated
    best = min(_timed(trainer, groups) for _ in range(steps))
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    queue.put((rank, beta, total, trainable, peak_mib - baseline_mib, tokens / best, push_bytes))


def _timed(trainer: Trainer, groups) -> float:
    start = time.perf_counter()
    trainer.update(groups)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="100m", choices=sorted(SHAPES))
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    add_record_flag(parser, SECTION)
    args = parser.parse_args()
    with Report(SECTION) as report:
        print(machine_description(f"{args.threads} threads"))
        context = multiprocessing.get_context("spawn")
        queue = context.Queue()
        print(
            f"{'':>10} {'beta':>5} {'trainable':>12} {'of total':>12} {'peak MiB':>13} "
            f"{'tokens/s':>9} {'push MB':>8}"
        )
        for rank in (0, args.rank):
            for beta in (0.0, 0.04):
                child = context.Process(
                    target=run_case, args=(args.size, rank, beta, args.steps, args.threads, queue)
                )
                child.start()
                rank_, beta_, total, trainable, peak, rate, push = queue.get()
                child.join()
                label = f"LoRA r={rank_}" if rank_ else "full FT"
                print(
                    f"{label:>10} {beta_:5.2f} {trainable:12,} {total:12,} {peak:13,.0f} "
                    f"{rate:9,.0f} {push / 1e6:8.1f}"
                )
    if args.record:
        report.save(sys.argv)


if __name__ == "__main__":
    main()
