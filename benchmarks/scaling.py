"""Scaling out: rollout throughput with 1 vs 2 rollout services (and, later, the learner on 1 vs 2 processes).

    uv run python benchmarks/scaling.py                      # rollout half, default sizes
    uv run python benchmarks/scaling.py --quick              # fewer tokens, for a smoke run
    uv run python benchmarks/scaling.py --services 1,2,3 --new-tokens 64

Rollout half: every service is a real process started the way a user starts it (`grpo-reward serve`,
`grpo-rollout serve --generator hf --device cpu --torch-threads 1`, serving the tiny Qwen2-shaped
model of benchmarks/rollout.py with random weights and EOS disabled, so every completion runs the
full `--new-tokens`). The learner side is the real `RolloutClient` over a `RolloutPool`: each round
is one Generate call of `--prompts` prompts x `--group` completions, spread by load over the
services; the figure is completion tokens per second of wall time over `--rounds` rounds (after one
warm-up round), scored by the real reward service. With one torch thread per service, N services
can use N cores: on an idle machine with >= N free cores the ratio approaches N, and on a shared
box it shows what the neighbours leave (the load average is printed).

Learner half: `learner_half()` is the place for learner tokens/s with 1 vs 2 gloo processes; it
needs the learner's torchrun entry point and reports that it is not measured until that exists.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from grpo_learner.config import SamplingConfig
from grpo_learner.prompts import PromptItem
from grpo_learner.rollout_client import RolloutClient
from grpo_learner.rollout_pool import PoolSettings, RolloutPool
from grpo_learner.service_processes import ServiceProcess, find_executable, start_service
from rollout import SIZES, machine_info, save_model  # benchmarks/rollout.py: model + machine facts


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
    pool = RolloutPool(addresses, settings=PoolSettings())
    client = RolloutClient(
        pool,
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
        params = save_model(SIZES[args.size], model)
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


def learner_half(args: argparse.Namespace) -> None:
    """Learner tokens/s with 1 vs 2 gloo processes (torchrun): to be written against the learner's
    distributed entry point once it is in the tree; until then this half reports that it is not
    measured rather than timing a home-made stand-in."""
    print(
        "learner 1 vs 2 gloo processes: not measured (the learner has no torchrun entry point in this "
        "tree yet)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--part", choices=["rollout", "learner", "all"], default="all")
    parser.add_argument("--services", default="1,2", help="rollout service counts to compare")
    parser.add_argument("--size", default="tiny", choices=sorted(SIZES))
    parser.add_argument("--prompts", type=int, default=16, help="prompts per round (one Generate call)")
    parser.add_argument("--group", type=int, default=8)
    parser.add_argument("--prompt-len", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="16 new tokens, 1 round")
    args = parser.parse_args()
    if args.quick:
        args.new_tokens, args.rounds = 16, 1
    torch.set_num_threads(1)
    print(machine_info(1).replace("(1 threads)", "(1 thread per rollout service)"))
    print(f"cores usable by this process: {len(os.sched_getaffinity(0))}")
    if args.part in ("rollout", "all"):
        rollout_half(args)
    if args.part in ("learner", "all"):
        learner_half(args)


if __name__ == "__main__":
    main()
