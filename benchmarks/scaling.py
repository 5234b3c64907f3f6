"""Scaling out: rollout throughput with 1 vs 2 rollout services, learner throughput with 1 vs 2 processes.

    uv run python benchmarks/scaling.py                      # both halves
    uv run python benchmarks/scaling.py --quick              # fewer tokens and steps, a smoke run
    uv run python benchmarks/scaling.py --part rollout --services 1,2,3 --new-tokens 128

Rollout half: every service is a real process started the way a user starts it (`grpo-reward serve`,
`grpo-rollout serve --generator hf --device cpu --torch-threads 1`, serving the tiny Qwen2-shaped
model of benchmarks/rollout.py with random weights and EOS disabled, so every completion runs the
full `--new-tokens`). The learner side is the real `RolloutClient` over a `RolloutPool`: each round
is one Generate call of `--prompts` prompts x `--group` completions, spread by load over the
services; the figure is completion tokens per second of wall time over `--rounds` rounds (after one
warm-up round), scored by the real reward service. With one torch thread per service, N services
can use N cores: on an idle machine with >= N free cores the ratio approaches N, and on a shared
box it shows what the neighbours leave (the load average is printed).

Learner half: the learner trains on the same synthetic global batches (grpo_learner.data.synthetic, no
rollout service) as 1 process and as 2 gloo ranks under torchrun (FSDP2 on CPU, the learner's own
distributed entry point: `run_training` under WORLD_SIZE=2); the figure is global batch tokens over
rank 0's median step time (collectives included), first step not timed. A small Qwen2-shaped model
(~3M params) so the update dominates; with one thread per process the ideal ratio is 2 on >= 2
free cores.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from grpo_learner.config import RolloutConfig, SamplingConfig
from grpo_learner.data.prompts import PromptItem
from grpo_learner.local.service_processes import ServiceProcess, find_executable, start_service
from grpo_learner.rollouts.client import RolloutClient
from grpo_learner.rollouts.pool import RolloutPool
from model_shapes import SHAPES, machine_description  # benchmarks/model_shapes.py
from results_file import Report, add_record_flag  # benchmarks/results_file.py
from rollout import save_model  # benchmarks/rollout.py

SECTION = "Scaling: rollout services and learner processes"  # of benchmarks/RESULTS.md, written with --record


@dataclass
class RolloutFigure:
    services: int
    tokens: int
    seconds: float
    shares: dict[str, int]  # prompts each service was sent in the timed rounds
    client_cpu_seconds: float  # CPU the learner side (client, pool, probes) spent in the timed rounds

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds


def start_rollouts(count: int, model: Path, reward: ServiceProcess, state_dir: Path) -> list[ServiceProcess]:
    rollouts = []
    for index in range(count):
        argv = [
            find_executable("grpo-rollout"), "serve",
            "--model", str(model),
            "--generator", "hf",
            "--device", "cpu",
            "--torch-threads", "1",
            "--reward-address", reward.address,
            "--log-level", "WARNING",
        ]  # fmt: skip
        rollouts.append(start_service(f"rollout-{count}-{index}", argv, state_dir, ready_timeout_s=300))
    return rollouts


def round_prompts(round_index: int, count: int, prompt_len: int) -> list[PromptItem]:
    return [
        PromptItem(
            id=f"r{round_index}-p{i}",
            reference=str(i % 10),
            token_ids=tuple((7 * i + j + round_index) % 40 + 1 for j in range(prompt_len)),
        )
        for i in range(count)
    ]


async def measure_rollout(
    addresses: list[str], prompts: int, group: int, prompt_len: int, new_tokens: int, rounds: int
) -> RolloutFigure:
    pool = RolloutPool(addresses)
    client = RolloutClient(
        pool,
        RolloutConfig(),
        group_size=group,
        sampling=SamplingConfig(temperature=1.0, max_new_tokens=new_tokens),
        apply_chat_template=False,
        seed=0,
    )
    try:
        warm = [g async for g in client.generate(round_prompts(-1, len(addresses), prompt_len))]
        assert len(warm) == len(addresses)
        before = dict(client.sent_prompts)
        tokens = 0
        cpu_started = time.process_time()
        started = time.perf_counter()
        for index in range(rounds):
            batch = round_prompts(index, prompts, prompt_len)
            async for group_message in client.generate(batch):
                tokens += sum(len(c.token_ids) for c in group_message.completions)
        seconds = time.perf_counter() - started
        client_cpu = time.process_time() - cpu_started
        shares = {a: client.sent_prompts[a] - before.get(a, 0) for a in addresses}
    finally:
        await client.close()
    expected = rounds * prompts * group * new_tokens
    if tokens != expected:
        raise RuntimeError(f"expected {expected} completion tokens (EOS disabled), got {tokens}")
    return RolloutFigure(len(addresses), tokens, seconds, shares, client_cpu)


def rollout_half(args: argparse.Namespace) -> list[RolloutFigure]:
    counts = [int(c) for c in args.services.split(",")]
    figures = []
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "model"
        params = save_model(SHAPES[args.size], model)
        print(
            f"model: {args.size} Qwen2-shaped, {params / 1e6:.1f}M params, random weights, EOS disabled; "
            f"{args.prompts} prompts x {args.group} completions per round, prompt {args.prompt_len} tokens, "
            f"{args.new_tokens} new tokens, {args.rounds} timed rounds"
        )
        state_dir = Path(tmp) / "services"
        reward = start_service(
            "reward",
            [find_executable("grpo-reward"), "serve", "--workers", "1"],
            state_dir,
            ready_timeout_s=120,
        )
        try:
            for count in counts:
                rollouts = start_rollouts(count, model, reward, state_dir)
                try:
                    figure = asyncio.run(
                        measure_rollout(
                            [r.address for r in rollouts],
                            args.prompts,
                            args.group,
                            args.prompt_len,
                            args.new_tokens,
                            args.rounds,
                        )
                    )
                finally:
                    for rollout in rollouts:
                        rollout.stop()
                figures.append(figure)
                split = " / ".join(str(n) for n in figure.shares.values())
                print(
                    f"{count} rollout service(s): {figure.tokens} completion tokens in "
                    f"{figure.seconds:6.2f} s -> {figure.tokens_per_second:8.0f} tokens/s "
                    f"(prompts per service: {split}; learner-side CPU {figure.client_cpu_seconds:.2f} s)"
                )
        finally:
            reward.stop()
    base = figures[0]
    for figure in figures[1:]:
        print(
            f"rollout throughput {figure.services} vs {base.services} service(s): "
            f"{figure.tokens_per_second / base.tokens_per_second:.2f}x"
        )
    return figures


# --- learner half: 1 vs 2 gloo processes -------------------------------------------------------

LEARNER_SIZE = SHAPES["small"]
SYNTHETIC = {"num_groups": 8, "group_size": 8, "completion_length": (48, 64)}
SOURCE_SEED = 5


@dataclass
class LearnerFigure:
    processes: int
    step_seconds: float  # median over the timed steps (rank 0's view: includes the collectives)
    tokens_per_step: int  # prompt + completion tokens of the global batch

    @property
    def tokens_per_second(self) -> float:
        return self.tokens_per_step / self.step_seconds


def learner_config(model_dir: Path, run_dir: Path, steps: int) -> dict:
    return {
        "model": {"name_or_path": str(model_dir)},
        "rollout": {"group_size": SYNTHETIC["group_size"]},
        "optim": {"lr": 1e-4},
        "loss": {"loss_type": "dapo"},
        "train": {"max_steps": steps, "micro_batch_size": 8, "seed": 0, "device": "cpu"},
        "checkpoint": {"interval": 10_000},
        "run_dir": str(run_dir),
        "tensorboard": False,
    }


def learner_rank(config_path: Path) -> None:
    """One learner process (plain, or one rank under torchrun) training on synthetic groups."""
    from grpo_learner.config import LearnerConfig
    from grpo_learner.data.synthetic import SyntheticGroupSource
    from grpo_learner.training.loop import run_training

    torch.set_num_threads(1)
    config = LearnerConfig.model_validate(json.loads(config_path.read_text()))
    source = SyntheticGroupSource(seed=SOURCE_SEED, **SYNTHETIC)  # used by rank 0 only
    asyncio.run(run_training(config, source=source, progress=False))


def global_tokens_per_step(steps: int) -> list[int]:
    from grpo_learner.data.synthetic import synthetic_groups

    return [
        sum(len(g.prompt_token_ids) + len(c.token_ids) for g in groups for c in g.completions)
        for groups in (synthetic_groups(step, seed=SOURCE_SEED, **SYNTHETIC) for step in range(steps))
    ]


def run_learner(processes: int, model_dir: Path, tmp: Path, steps: int) -> LearnerFigure:
    run_dir = tmp / f"learner-{processes}"
    config_path = tmp / f"learner-{processes}.json"
    config_path.write_text(json.dumps(learner_config(model_dir, run_dir, steps)))
    worker = [str(Path(__file__).resolve()), "--learner-rank", str(config_path)]
    if processes == 1:
        command = [sys.executable, *worker]
    else:
        command = [
            sys.executable, "-m", "torch.distributed.run", "--standalone",
            "--nproc-per-node", str(processes), *worker,
        ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"learner on {processes} process(es) failed:\n{done.stderr[-3000:]}")
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    times = [r["step_time"] for r in records[1:]]  # the first step warms up (allocations, gloo)
    tokens = global_tokens_per_step(steps)[1:]
    return LearnerFigure(processes, statistics.median(times), round(statistics.mean(tokens)))


def learner_half(args: argparse.Namespace) -> list[LearnerFigure]:
    """Learner tokens/s with 1 vs 2 gloo processes on the same global batches (FSDP2 on CPU)."""
    figures = []
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "model"
        params = save_model(LEARNER_SIZE, model)
        print(
            f"learner: {LEARNER_SIZE.name} Qwen2-shaped, {params / 1e6:.1f}M params, dapo, mu=1; "
            f"{SYNTHETIC['num_groups']} groups x {SYNTHETIC['group_size']} completions of "
            f"{SYNTHETIC['completion_length'][0]}-{SYNTHETIC['completion_length'][1]} tokens per step, "
            f"{args.learner_steps} steps (first not timed), 1 torch thread per process"
        )
        for processes in (1, 2):
            figure = run_learner(processes, model, Path(tmp), args.learner_steps)
            figures.append(figure)
            print(
                f"{processes} learner process(es): {figure.step_seconds:6.2f} s per step (median) -> "
                f"{figure.tokens_per_second:8.0f} tokens/s"
            )
    print(
        f"learner throughput 2 vs 1 process(es): "
        f"{figures[1].tokens_per_second / figures[0].tokens_per_second:.2f}x"
    )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--part", choices=["rollout", "learner", "all"], default="all")
    parser.add_argument("--services", default="1,2", help="rollout service counts to compare")
    parser.add_argument("--size", default="tiny", choices=sorted(SHAPES))
    parser.add_argument("--prompts", type=int, default=16, help="prompts per round (one Generate call)")
    parser.add_argument("--group", type=int, default=8)
    parser.add_argument("--prompt-len", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--learner-steps", type=int, default=4)
    parser.add_argument("--quick", action="store_true", help="16 new tokens, 1 round, 3 learner steps")
    parser.add_argument("--learner-rank", type=Path, help=argparse.SUPPRESS)  # internal: one learner process
    add_record_flag(parser, SECTION)
    args = parser.parse_args()
    if args.learner_rank is not None:
        learner_rank(args.learner_rank)
        return
    if args.quick:
        args.new_tokens, args.rounds, args.learner_steps = 16, 1, 3
    with Report(SECTION) as report:
        torch.set_num_threads(1)
        print(machine_description("1 thread per process"))
        print(f"cores usable by this process: {len(os.sched_getaffinity(0))}")
        if args.part in ("rollout", "all"):
            rollout_half(args)
        if args.part in ("learner", "all"):
            learner_half(args)
    if args.record:
        report.save(sys.argv)


if __name__ == "__main__":
    main()
