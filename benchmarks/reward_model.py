"""Throughput of the model-based reward terms: a reward model on CPU at the preference demo's size, and
the judge client against a local chat-completions server.

    uv run python benchmarks/reward_model.py [--items 512] [--batches 5] [--threads 1] [--record]

Reward model: the preference demo's shape (`grpo_learner.embedded.reward_model.build_reward_model`, ~0.8M
parameters, the char tokenizer), served exactly as `grpo-reward serve --reward-model` serves it: a
process of its own, `batch_size` items per forward pass. Items/s counts what `RewardModel.score_batch`
returns per wall second for a batch of `--items` (the first batch, paying for the first forward, is not
counted): short items like the demo's (`17 kg=` -> `17 kg`) and 128-character completions.

Judge: `--items` items through `Judge.score_batch` (concurrency 8) against the tests' stand-in server
(packages/reward/tests/openai_chat_server.py: a ~3k-parameter model, one generated token per reply),
so the figure is the client's and the HTTP round trip's cost, not a real judge model's.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

from grpo_learner.embedded.reward_model import build_reward_model
from grpo_learner.embedded.tokenizer import build_tokenizer
from grpo_reward.models.config import JudgeConfig, RewardModelConfig
from grpo_reward.models.judge import Judge
from grpo_reward.models.reward_model import RewardModel
from grpo_reward.verifier import Item
from model_shapes import machine_description  # benchmarks/model_shapes.py
from results_file import Report, add_record_flag  # benchmarks/results_file.py

SECTION = "Reward model and judge throughput"  # of benchmarks/RESULTS.md, written with --record
STAND_IN = Path(__file__).resolve().parents[1] / "packages" / "reward" / "tests"


def items_per_second(model: RewardModel, items: list[Item], batches: int) -> tuple[float, int]:
    """Items/s over `batches` batches after one warm-up batch, and how many came back truncated."""
    asyncio.run(model.score_batch(items))
    started = time.perf_counter()
    truncated = 0
    for _ in range(batches):
        verdicts = asyncio.run(model.score_batch(items))
        assert not any(v.timed_out for v in verdicts), verdicts[0].reason
        truncated += sum(v.components["truncated"] == 1 for v in verdicts)
    return batches * len(items) / (time.perf_counter() - started), truncated


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--items", type=int, default=512, help="items per batch")
    parser.add_argument("--batches", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the model process")
    parser.add_argument("--batch-size", type=int, default=32, help="items per forward pass")
    add_record_flag(parser, SECTION)
    args = parser.parse_args()
    with Report(SECTION) as report, tempfile.TemporaryDirectory() as folder:
        print(machine_description(f"reward model process on {args.threads} thread(s)"))
        tokenizer = build_tokenizer()
        model = build_reward_model(tokenizer, seed=0)
        parameters = sum(p.numel() for p in model.parameters())
        model.config.pad_token_id = tokenizer.pad_token_id
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        config = RewardModelConfig(
            name="rm", path=folder, torch_threads=args.threads, batch_size=args.batch_size, max_length=256
        )
        served = RewardModel(config)
        try:
            shapes = {
                "demo-sized (`17 kg=` + `17 kg`)": [
                    Item(f"{i % 400} kg", "", prompt=f"{i % 400} kg=") for i in range(args.items)
                ],
                "128-character completions": [
                    Item(("12 kg " * 22)[:128], "", prompt=f"{i % 20} kg+{i % 17} kg=")
                    for i in range(args.items)
                ],
            }
            for label, items in shapes.items():
                rate, truncated = items_per_second(served, items, args.batches)
                print(
                    f"reward model ({parameters:,} parameters, batch_size {args.batch_size}), {label}: "
                    f"{rate:,.0f} items/s ({args.batches} batches of {args.items}; {truncated} truncated)"
                )
        finally:
            served.close()
        sys.path.insert(0, str(STAND_IN))
        from openai_chat_server import chat_server

        with chat_server() as (url, _):
            judge = Judge(JudgeConfig(name="j", url=url, score_pattern=r"^(\d)$", max_score=9, max_tokens=1))
            items = [Item("17 kg", "", prompt="17 kg=")] * args.items
            asyncio.run(judge.score_batch(items[:8]))
            started = time.perf_counter()
            verdicts = asyncio.run(judge.score_batch(items))
            rate = len(items) / (time.perf_counter() - started)
            failed = sum(v.timed_out for v in verdicts)
            print(
                f"judge client, concurrency 8, local stand-in server: {rate:,.0f} items/s ({failed} failed)"
            )
    if args.record:
        report.save(sys.argv)


if __name__ == "__main__":
    main()
