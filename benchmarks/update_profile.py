"""The learner's update against a plain forward + backward of the same batch, done TRL's way.

    OMP_WAIT_POLICY=PASSIVE uv run python benchmarks/update_profile.py [--shapes 1m,3m,default]
        [--threads 1 2] [--repeats 7] [--record]

On vs_trl.py's step shapes (8 prompts x G 8 of the embedded arithmetic task: ~6 prompt tokens, 12 or
32 completion tokens; the 0.8M and 3.2M Qwen2 models, random weights) and the embedded default's
step (32 prompts, the 0.8M model) it times, in this process and
on the same batch, alternately:

- ours: `Trainer.update` with the embedded default's learner settings (GRPO loss, beta 0, one
  micro-batch, packing (auto) and prompt sharing as configured), with packing always, and with
  packing / prompt sharing off;
- plain: what TRL's GRPOTrainer does for one step at beta 0 and one iteration, written out: the
  batch left-padded to one [B, S] tensor, one forward with `logits_to_keep = completion + 1`,
  logits / temperature, `log_softmax` gathered at the completion tokens, the GRPO token loss
  (ratio to its detached self times the advantage, mean per sequence, mean over sequences),
  backward, clip to norm 1, AdamW step.

Per variant: the median seconds of an update and its forward / backward / optimizer split, and the
count of aten operator calls one update dispatches (load-independent: where the time goes when the
kernels are tiny). The machine is shared: the provenance line records the load; the op counts and
the ours / plain ratio of each alternating pair are what to read.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from grpo_learner.config import LearnerConfig
from grpo_learner.data.rollout_data import ScoredGroup
from grpo_learner.data.synthetic import synthetic_groups
from grpo_learner.embedded.default_run import embedded_config
from grpo_learner.grpo.optim import build_optimizer, build_scheduler
from grpo_learner.grpo.update import Trainer
from grpo_runs import tokenizer_for  # benchmarks/grpo_runs.py
from model_shapes import ModelShape, machine_description  # benchmarks/model_shapes.py
from results_file import Report, add_record_flag  # benchmarks/results_file.py
from transformers import AutoModelForCausalLM, PreTrainedModel

SECTION = "Learner update against a plain forward + backward"  # of benchmarks/RESULTS.md

TINY = ModelShape("1m", hidden=128, layers=4, heads=4, kv_heads=2, intermediate=384, vocab=0)
SMALL = ModelShape("3m", hidden=256, layers=4, heads=4, kv_heads=2, intermediate=768, vocab=0)
GROUP, PROMPT_TOKENS = 8, (5, 7)  # "37+45=" is ~6 characters


@dataclass(frozen=True)
class StepShape:
    model: ModelShape
    new_tokens: int
    prompts: int


# vs_trl.py's 1m and 3m shapes (its TINY is the embedded default's 0.8M model), and the embedded
# default's own step (32 prompts x G 8, 12 new tokens).
SHAPES = {
    "1m": StepShape(TINY, 12, 8),
    "3m": StepShape(SMALL, 32, 8),
    "default": StepShape(TINY, 12, 32),
}


@dataclass(frozen=True)
class Timing:
    seconds: float
    forward: float
    backward: float
    optimizer: float


def build_model(shape: ModelShape) -> PreTrainedModel:
    tokenizer = tokenizer_for(shape.vocab)
    config = shape.qwen2_config(
        vocab_size=(len(tokenizer) + 15) // 16 * 16, pad_token_id=tokenizer.pad_token_id
    )
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config, dtype=torch.float32).train()


def batch_of(model: PreTrainedModel, shape: StepShape) -> list[ScoredGroup]:
    return synthetic_groups(
        0,
        num_groups=shape.prompts,
        group_size=GROUP,
        vocab_size=model.config.vocab_size,
        prompt_length=PROMPT_TOKENS,
        completion_length=(shape.new_tokens, shape.new_tokens),
    )


def ours(model: PreTrainedModel, config: LearnerConfig) -> Callable[[list[ScoredGroup]], Timing]:
    optimizer = build_optimizer(model, config.optim)
    trainer = Trainer(model, optimizer, build_scheduler(optimizer, config.optim, 1000), config)

    def step(groups: list[ScoredGroup]) -> Timing:
        metrics = trainer.update(groups)
        phases = (metrics[f"timing/{p}"] for p in ("forward", "backward", "optimizer"))
        return Timing(metrics["step_time"], *phases)

    return step


def plain(model: PreTrainedModel, config: LearnerConfig) -> Callable[[list[ScoredGroup]], Timing]:
    """TRL's GRPOTrainer step at beta 0, one iteration, written out (module doc)."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.optim.lr)
    pad = model.config.pad_token_id
    temperature = config.rollout.sampling.temperature

    def step(groups: list[ScoredGroup]) -> Timing:
        start = time.perf_counter()
        rows = [(g.prompt_token_ids, c.token_ids) for g in groups for c in g.completions]
        prompt_width = max(len(p) for p, _ in rows)
        keep = max(len(c) for _, c in rows)
        ids = torch.full((len(rows), prompt_width + keep), pad)
        mask = torch.zeros_like(ids)
        completion_mask = torch.zeros(len(rows), keep)
        for i, (prompt, completion) in enumerate(rows):  # prompts left-padded, completions right-padded
            ids[i, prompt_width - len(prompt) : prompt_width + len(completion)] = torch.tensor(
                prompt + completion
            )
            mask[i, prompt_width - len(prompt) : prompt_width + len(completion)] = 1
            completion_mask[i, : len(completion)] = 1
        rewards = torch.tensor([c.reward for g in groups for c in g.completions]).view(len(groups), -1)
        advantages = ((rewards - rewards.mean(1, keepdim=True)) / (rewards.std(1, keepdim=True) + 1e-4)).view(
            -1
        )
        forward_started = time.perf_counter()
        logits = model(input_ids=ids, attention_mask=mask, logits_to_keep=keep + 1).logits
        logits = logits[:, :-1] / temperature
        targets = ids[:, prompt_width:]
        logps = logits.log_softmax(-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        ratio = torch.exp(logps - logps.detach())
        per_token = -ratio * advantages.unsqueeze(1)
        loss = ((per_token * completion_mask).sum(-1) / completion_mask.sum(-1).clamp(min=1)).mean()
        backward_started = time.perf_counter()
        loss.backward()
        optimizer_started = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        end = time.perf_counter()
        return Timing(
            end - start,
            backward_started - forward_started,
            optimizer_started - backward_started,
            end - optimizer_started,
        )

    return step


def aten_calls(step: Callable[[list[ScoredGroup]], Timing], groups: list[ScoredGroup]) -> int:
    """Operator calls one update dispatches (every aten:: event the profiler records)."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        step(groups)
    return sum(e.count for e in prof.key_averages() if e.key.startswith("aten::"))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shapes", default="1m,3m,default")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=7, help="alternating rounds per variant")
    add_record_flag(parser, SECTION)
    args = parser.parse_args()
    base = embedded_config({})
    variants = {
        "ours (default: packing auto, shared prompt)": (ours, base),
        "ours, packing always": (
            ours,
            base.model_copy(update={"train": base.train.model_copy(update={"packing": True})}),
        ),
        "ours, packing off": (
            ours,
            base.model_copy(update={"train": base.train.model_copy(update={"packing": False})}),
        ),
        "ours, packing and prompt sharing off": (
            ours,
            base.model_copy(
                update={
                    "train": base.train.model_copy(update={"packing": False, "share_prompt_forward": False})
                }
            ),
        ),
        "plain, TRL's way": (plain, base),
    }
    with Report(SECTION) as report:
        # grpo train sets PASSIVE before torch loads (openmp_policy.py); run this one the same way
        wait_policy = os.environ.get("OMP_WAIT_POLICY", "unset: spinning")
        print(machine_description(f"threads per row; OMP_WAIT_POLICY {wait_policy}"))
        print(f"learner settings: the embedded default's ({base.loss.loss_type} loss, beta {base.loss.beta})")
        for name in args.shapes.split(","):
            shape = SHAPES[name]
            for threads in args.threads:
                torch.set_num_threads(threads)
                steps, calls, timings = {}, {}, {}
                for label, (make, config) in variants.items():
                    model = build_model(shape.model)
                    steps[label] = make(model, config)
                    groups = batch_of(model, shape)
                    steps[label](groups)  # warm-up
                    calls[label] = aten_calls(steps[label], groups)
                    timings[label] = []
                params = sum(p.numel() for p in model.parameters())
                for _ in range(args.repeats):  # alternate, so load changes hit every variant alike
                    for label, step in steps.items():
                        timings[label].append(step(groups))
                plain_median = statistics.median(t.seconds for t in timings["plain, TRL's way"])
                print(
                    f"\n== {name}: {params / 1e6:.2f}M params, {shape.prompts} prompts x G {GROUP}, "
                    f"{shape.new_tokens} new tokens, {threads} thread(s), median of {args.repeats}"
                )
                for label, runs in timings.items():
                    median = statistics.median(t.seconds for t in runs)
                    split = " / ".join(
                        f"{statistics.median(getattr(t, p) for t in runs):.3f}"
                        for p in ("forward", "backward", "optimizer")
                    )
                    print(
                        f"{label:40s} {median:.3f} s ({median / plain_median:.2f}x plain; "
                        f"forward / backward / optimizer {split} s), {calls[label]:,} aten calls"
                    )
    if args.record:
        report.save(sys.argv)


if __name__ == "__main__":
    main()
