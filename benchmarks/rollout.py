"""Rollout throughput of the `hf` backend on CPU, and weight-update latency through the service.

    uv run python benchmarks/rollout.py                 # tiny and ~100M configs, update latency
    uv run python benchmarks/rollout.py --quick         # fewer tokens, for a smoke run
    uv run python benchmarks/rollout.py --sizes tiny --threads 2

Models are Qwen2-shaped, built from configs with random weights (shapes from
benchmarks/model_shapes.py, as in learner_step.py). Generation: `prompts x group_size` sequences
sampled as one batch at temperature 1 with EOS disabled, so every sequence runs the full
`max_new_tokens`; the figure is completion tokens per second of wall time (prefill included).
Weight update: a RolloutService process-local server on loopback, the state dict pushed as the
learner pushes it (pre-serialised chunks over real gRPC); reported as the wall time of the
UpdateWeights call and the service's own receive/apply split.
On a shared machine wall-clock figures move with the neighbours' load: the load average is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import grpc
import torch
from grpo_common.server import ServerConfig
from grpo_common.weights.codec import encode_state_dict_wire, update_weights_method
from grpo_rollout.app import running_rollout
from grpo_rollout.backends.contract import SamplingParams
from grpo_rollout.backends.hf.config import HFConfig
from grpo_rollout.backends.hf.generator import HFGenerator
from grpo_rollout.config import RewardSettings, RolloutServiceConfig
from model_shapes import SHAPES, ModelShape, machine_description  # benchmarks/model_shapes.py
from results_file import Report, add_record_flag  # benchmarks/results_file.py
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

SECTION = "Rollout: hf generation and weight updates"  # of benchmarks/RESULTS.md, written with --record


def save_model(shape: ModelShape, directory: Path) -> int:
    """Save a random Qwen2-shaped model plus a small char tokenizer; return the parameter count."""
    # eos_token_id=None: never stop early, every sequence runs max_new_tokens
    config = shape.qwen2_config(eos_token_id=None, pad_token_id=0)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    model.save_pretrained(directory)
    vocab = {"<pad>": 0, **{c: i + 1 for i, c in enumerate("0123456789+-*/= abcdefghijklmnopqrstuvwxyz")}}
    core = Tokenizer(models.WordLevel(vocab=vocab | {"<unk>": len(vocab)}, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    core.decoder = decoders.Fuse()
    PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", unk_token="<unk>").save_pretrained(
        directory
    )
    return sum(p.numel() for p in model.parameters())


def bench_generation(directory: Path, prompts: int, group: int, prompt_len: int, new_tokens: int) -> float:
    generator = HFGenerator.from_pretrained(directory, HFConfig())
    batch = [[(7 * i + j) % 40 + 1 for j in range(prompt_len)] for i in range(prompts)]
    warm = SamplingParams(max_new_tokens=2, seed=0)
    generator.generate_sync(batch[:1], 2, warm)
    sampling = SamplingParams(max_new_tokens=new_tokens, temperature=1.0, seed=0)
    started = time.perf_counter()
    result = generator.generate_sync(batch, group, sampling)
    seconds = time.perf_counter() - started
    tokens = sum(len(c.token_ids) for g in result for c in g)
    assert tokens == prompts * group * new_tokens
    return tokens / seconds


async def bench_update(directory: Path, repeats: int) -> list[tuple[float, float, float]]:
    config = RolloutServiceConfig(
        model=str(directory),
        server=ServerConfig(port=0),
        reward=RewardSettings(address="127.0.0.1:9"),  # no Generate here: never called
    )
    timings = []
    async with running_rollout(config) as rollout:
        state = {k: v.clone() for k, v in rollout.generator.model.state_dict().items()}  # type: ignore[attr-defined]
        async with grpc.aio.insecure_channel(
            rollout.server.address,
            options=[
                ("grpc.max_send_message_length", 64 << 20),
                ("grpc.max_receive_message_length", 64 << 20),
            ],
        ) as channel:
            update_weights = update_weights_method(channel)
            for version in range(1, repeats + 1):
                started = time.perf_counter()
                answer = await update_weights(encode_state_dict_wire(state, version), timeout=600)
                timings.append((time.perf_counter() - started, answer.receive_seconds, answer.apply_seconds))
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="tiny,100m")
    # 1 by default: on a shared, busy box extra intra-op threads spin against the neighbours
    # (measured here: 30x slower for the tiny model with 2 threads under load).
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="fewer tokens and one update")
    add_record_flag(parser, SECTION)
    args = parser.parse_args()
    with Report(SECTION) as report:
        torch.set_num_threads(args.threads)
        print(machine_description(f"{args.threads} threads"))
        prompts, group, prompt_len = 8, 8, 32
        new_tokens = 32 if args.quick else 128
        for name in args.sizes.split(","):
            size = SHAPES[name]
            with tempfile.TemporaryDirectory() as tmp:
                directory = Path(tmp)
                params = save_model(size, directory)
                rate = bench_generation(directory, prompts, group, prompt_len, new_tokens)
                print(
                    f"{name:>5} ({params / 1e6:6.1f}M params): hf generate {prompts}x{group} sequences, "
                    f"prompt {prompt_len}, {new_tokens} new tokens -> {rate:8.0f} completion tokens/s"
                )
                timings = asyncio.run(bench_update(directory, 1 if args.quick else 3))
                megabytes = params * 4 / 1e6
                for wall, receive, apply in timings:
                    print(
                        f"{name:>5}: UpdateWeights {megabytes:7.1f} MB fp32 over loopback gRPC: "
                        f"{wall:6.3f} s wall (receive {receive:.3f} s, apply {apply:.3f} s)"
                    )
    if args.record:
        report.save(sys.argv)


if __name__ == "__main__":
    main()
