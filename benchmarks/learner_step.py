"""Throughput of one GRPO update (forward + backward + AdamW step) on CPU, with a FLOP/s estimate.

    uv run python benchmarks/learner_step.py [--steps 2] [--sizes tiny,100m] [--threads N]
        [--prompt-tokens 16 48] [--sharing on off] [--uneven --packing off on]

For a tiny and a ~100M-parameter Qwen2-shaped model (built from a config, random weights) it times
`Trainer.update` on a fixed synthetic batch and reports tokens/s (prompt + completion tokens per
second of update) and an estimate of achieved FLOP/s, next to the FLOP/s of a plain fp32 torch
matmul measured in the same run (the practical ceiling of this machine). Prints machine info first.
With `--sharing on off` it times both layouts of `train.share_prompt_forward`: each group's prompt
run once with its KV shared by the G completions, or one pass per sequence; tokens/s counts the
sequences' tokens either way (what the learner logs), so the ratio of the two is the saving.
With `--uneven` the completions are as uneven as reasoning ones: lengths log-uniform in [4, 256]
(median ~32, so the longest is ~8x the median), and `--packing off on` times the padded layout
against `train.packing`; each line then also says how many token positions the layout computed and
what share of them was padding (`tokens/computed`, `tokens/padding_fraction`).

FLOP model per update, one pass per sequence (T = all tokens, Tc = completion tokens, S = padded
row length; with a shared prompt the work is smaller and the figure is what it replaces):
  6 * N_nonembedding * T                      dense layers, forward + backward
  8 * V * d * Tc                              lm_head on completion positions only (fwd, recompute, bwd)
  12 * L * d * S * T                          attention scores and values, forward + backward
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass

import torch
from grpo_learner.config import LearnerConfig, OptimConfig
from grpo_learner.data.rollout_data import ScoredCompletion, ScoredGroup
from grpo_learner.data.synthetic import synthetic_groups
from grpo_learner.grpo.optim import build_optimizer, build_scheduler
from grpo_learner.grpo.update import Trainer, prepare_batch
from model_shapes import SHAPES, ModelShape, machine_description  # benchmarks/model_shapes.py
from results_file import Report, add_record_flag  # benchmarks/results_file.py
from transformers import AutoModelForCausalLM

SECTION = "Learner update"  # of benchmarks/RESULTS.md, written with --record
UNEVEN_SECTION = "Learner update, uneven completions"
UNEVEN_LENGTHS = (4, 256)  # log-uniform: median sqrt(4 * 256) = 32, the longest 8x that


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


def uneven(groups: list[ScoredGroup], seed: int = 0) -> list[ScoredGroup]:
    """`groups` with completion lengths log-uniform in UNEVEN_LENGTHS (tokens cycled from the originals)."""
    gen = torch.Generator().manual_seed(seed)
    low, high = torch.tensor(UNEVEN_LENGTHS, dtype=torch.float64).log()
    out = []
    for group in groups:
        completions = []
        for c in group.completions:
            length = int(torch.exp(low + (high - low) * torch.rand((), generator=gen, dtype=torch.float64)))
            tokens = (c.token_ids * (length // len(c.token_ids) + 1))[:length]
            logprobs = (c.sampler_logprobs * (length // len(c.token_ids) + 1))[:length]
            completions.append(ScoredCompletion(tokens, logprobs, c.reward, c.components))
        out.append(ScoredGroup(group.prompt_id, group.prompt_token_ids, tuple(completions), 0))
    return out


def build(size: ModelShape) -> torch.nn.Module:
    config = size.qwen2_config(attn_implementation="sdpa")
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config, dtype=torch.float32).train()


def run(
    size: ModelShape,
    work: Workload,
    steps: int,
    micro_batch_size: int,
    prompt_tokens: tuple[int, int],
    share_prompts: bool,
    packing: bool = False,
    spread_lengths: bool = False,
) -> None:
    model = build(size)
    params = sum(p.numel() for p in model.parameters())
    embedding = size.vocab * size.hidden
    config = LearnerConfig.model_validate(
        {
            "model": {"name_or_path": size.name},
            "loss": {"loss_type": "dapo"},
            "train": {
                "micro_batch_size": micro_batch_size,
                "share_prompt_forward": share_prompts,
                "packing": packing,
            },
            "rollout": {"sampling": {"max_new_tokens": UNEVEN_LENGTHS[1] if spread_lengths else 64}},
        }
    )
    optimizer = build_optimizer(model, OptimConfig(lr=1e-5))
    trainer = Trainer(model, optimizer, build_scheduler(optimizer, OptimConfig(lr=1e-5), 100), config)
    groups = synthetic_groups(
        0,
        num_groups=work.groups,
        group_size=work.group_size,
        vocab_size=size.vocab,
        prompt_length=prompt_tokens,
        completion_length=work.completion,
    )
    if spread_lengths:
        groups = uneven(groups)
    batch = prepare_batch(groups, config, torch.device("cpu"))
    tokens = batch.input_tokens
    completion_tokens = sum(mb.num_tokens for mb in batch.micro_batches)
    attention = 0
    for mb in batch.micro_batches:
        row_tokens = mb.prompt_mask.sum(-1)[mb.prompt_index] + mb.completion_mask.sum(-1)
        width = mb.prompt_ids.shape[1] + mb.completion_ids.shape[1]
        attention += 12 * size.layers * size.hidden * width * int(row_tokens.sum())
    flops = 6 * (params - embedding) * tokens + 8 * embedding * completion_tokens + attention
    trainer.update(groups)  # warm-up
    runs = []
    for _ in range(steps):
        start = time.perf_counter()
        metrics = trainer.update(groups)
        runs.append((time.perf_counter() - start, metrics))
    best, metrics = min(runs, key=lambda run: run[0])
    split = " / ".join(f"{metrics[f'timing/{phase}']:.3f}" for phase in ("forward", "backward", "optimizer"))
    lengths = sorted(len(c.token_ids) for g in groups for c in g.completions)
    layout = (
        f"completion lengths median {lengths[len(lengths) // 2]} / max {lengths[-1]}, "
        f"packing {'on' if packing else 'off'}: {metrics['tokens/computed']:,.0f} positions computed, "
        f"{metrics['tokens/padding_fraction']:.0%} padding; "
    )
    print(
        f"{size.name:>5}: {params / 1e6:6.1f}M params, {len(groups) * work.group_size} sequences, "
        f"{tokens} tokens ({completion_tokens} completion), micro-batch {micro_batch_size}, "
        f"shared prompt {'on' if share_prompts else 'off'}, {layout}"
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
    parser.add_argument("--prompt-tokens", type=int, nargs=2, default=[16, 48], help="prompt length range")
    parser.add_argument(
        "--sharing", nargs="+", choices=["on", "off"], default=["on"], help="train.share_prompt_forward"
    )
    parser.add_argument("--packing", nargs="+", choices=["on", "off"], default=["off"], help="train.packing")
    parser.add_argument(
        "--uneven", action="store_true", help=f"completion lengths log-uniform in {UNEVEN_LENGTHS}"
    )
    add_record_flag(parser, f"{SECTION} (with --uneven: {UNEVEN_SECTION})")
    args = parser.parse_args()
    with Report(UNEVEN_SECTION if args.uneven else SECTION) as report:
        torch.set_num_threads(args.threads)
        print(machine_description(f"{torch.get_num_threads()} threads"))
        print(f"plain fp32 matmul (1024^3): {matmul_flops() / 1e9:.1f} GFLOP/s")
        for name in args.sizes.split(","):
            for sharing in args.sharing:
                for packing in args.packing:
                    prompts = tuple(args.prompt_tokens)
                    shared, packed = sharing == "on", packing == "on"
                    work = WORKLOADS[name]
                    run(
                        SHAPES[name],
                        work,
                        args.steps,
                        args.micro_batch_size,
                        prompts,
                        shared,
                        packed,
                        args.uneven,
                    )
        print(f"plain fp32 matmul again:    {matmul_flops() / 1e9:.1f} GFLOP/s")
    if args.record:
        report.save(sys.argv)


if __name__ == "__main__":
    main()
