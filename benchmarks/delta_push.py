"""What a delta weight push saves, step by step, after real GRPO updates (issue 27).

    uv run python benchmarks/delta_push.py                 # embedded warm model and the 100M shape
    uv run python benchmarks/delta_push.py --models embedded --steps 3
    uv run python benchmarks/delta_push.py --record        # also write benchmarks/RESULTS.md

For each model, learning rate (1e-6, 1e-5) and push dtype (bf16, fp32): the learner's Trainer takes
`--steps` GRPO updates (the project's own update and AdamW, on synthetic scored groups: the
learner's side of a step without rollout services), and after each step its weights are snapshot
in the push dtype, as the pusher does. From the second step on, each snapshot is diffed against the
previous one (`grpo_common.weights.delta`), and pushed to a real RolloutService (hf backend, its
own process, the model in the push dtype) over gRPC loopback twice, as a delta on top of the
previous version and whole, each over the plain loopback and over a simulated 1 Gbit/s link (the
sender paces its chunks at 125 MB/s in-process; no host interface is touched).

Columns: `changed` = elements whose bits changed / all; `full MB` and `delta MB` = bytes on the
wire; `x fewer` = full / delta bytes; `diff s` = the learner's time to diff the snapshot (once per
version, shared by every service); `fp s` = one fingerprint of the snapshot (xxh3; the rollout
computes the same over what it serves); push seconds are from the first chunk to the reply (the
rollout has decoded, applied and fingerprinted the update), `delta` including `diff s`; `x faster`
= full / delta; `1Gb/s wire` = the delta push at 1 Gbit/s without the diff (what each further
rollout service costs: the diff is made once per version); `fp %` = fingerprint / delta push at
1 Gbit/s.

Models: "embedded", the embedded default's model after its supervised warm-up (what
`grpo train` starts its GRPO steps from); "100m", benchmarks/model_shapes.py's 100M Qwen2 shape,
random weights. Timings are wall seconds on a shared box: read them with the load on the
provenance line; byte counts and fractions do not depend on it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing as mp
import os
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from grpo.v1 import rollout_pb2
from grpo_common.channel import ChannelConfig, create_channel
from grpo_common.weights.codec import encode_state_dict_wire, update_weights_method
from grpo_common.weights.delta import diff_state_dicts
from grpo_common.weights.fingerprint import Fingerprint, fingerprint
from grpo_learner.config import LearnerConfig, OptimConfig
from grpo_learner.data.synthetic import synthetic_groups
from grpo_learner.grpo.optim import build_optimizer, build_scheduler
from grpo_learner.grpo.update import Trainer
from model_shapes import SHAPES, machine_description  # benchmarks/model_shapes.py
from results_file import Report, add_record_flag  # benchmarks/results_file.py
from transformers import AutoModelForCausalLM, PreTrainedModel

SECTION = "Delta weight pushes"  # of benchmarks/RESULTS.md, written with --record
LINK_BYTES_PER_S = 125e6  # 1 Gbit/s
MB = 1e6
DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}
ROLLOUT_DTYPES = {"bf16": "bfloat16", "fp32": "float32"}


# --- the models -----------------------------------------------------------------------------------


def model_loader(name: str, workdir: Path) -> Callable[[], PreTrainedModel]:
    """A function that builds the model afresh, the same weights every time."""
    if name == "embedded":  # the embedded default's model after its supervised warm-up, saved once
        from grpo_learner.embedded.default_run import embedded_config, prepare_warm_model
        from grpo_learner.embedded.tasks import EmbeddedConfig

        directory = prepare_warm_model(workdir, embedded_config({}), EmbeddedConfig())
        return lambda: AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32)
    shape = SHAPES[name]

    def build() -> PreTrainedModel:
        torch.manual_seed(0)
        config = shape.qwen2_config(attn_implementation="sdpa")
        return AutoModelForCausalLM.from_config(config, dtype=torch.float32)

    return build


def trainer_for(model: PreTrainedModel, lr: float) -> Trainer:
    config = LearnerConfig.model_validate(
        {"model": {"name_or_path": "bench"}, "loss": {"loss_type": "grpo", "beta": 0.0}, "optim": {"lr": lr}}
    )
    optim = OptimConfig(lr=lr, warmup_steps=0, schedule="constant")
    optimizer = build_optimizer(model, optim)
    return Trainer(model.train(), optimizer, build_scheduler(optimizer, optim, 100), config)


def snapshot(model: PreTrainedModel, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """What the pusher takes after a step: detached CPU copies in the push dtype."""
    return {n: t.detach().to("cpu", dtype=dtype, copy=True) for n, t in model.state_dict().items()}


# --- the receiver: a real RolloutService in its own process ----------------------------------------


def _serve(model_dir: str, dtype: str, ready: mp.Queue, stop) -> None:
    from grpo_common.server import ServerConfig
    from grpo_rollout.app import running_rollout
    from grpo_rollout.config import HFSettings, RewardSettings, RolloutConfig

    torch.set_num_threads(1)
    config = RolloutConfig(
        model=model_dir,
        server=ServerConfig(port=0, grace_seconds=0),
        reward=RewardSettings(address="127.0.0.1:9"),  # never called: the benchmark only pushes
        hf=HFSettings(dtype=dtype),
    )

    async def main() -> None:
        async with running_rollout(config) as rollout:
            ready.put(rollout.server.address)
            parent = mp.parent_process()
            while not stop.is_set() and (parent is None or parent.is_alive()):  # no orphan if killed
                await asyncio.sleep(0.1)

    asyncio.run(main())


@contextlib.contextmanager
def rollout_process(model: PreTrainedModel, dtype: str, workdir: Path):
    """A RolloutService serving `model` in `dtype` in a child process; yields its address."""
    directory = workdir / f"rollout-{dtype}"
    model.save_pretrained(directory)
    context = mp.get_context("spawn")
    ready, stop = context.Queue(), context.Event()
    process = context.Process(target=_serve, args=(str(directory), ROLLOUT_DTYPES[dtype], ready, stop))
    process.start()
    try:
        yield ready.get(timeout=600)
    finally:
        stop.set()
        process.join(timeout=30)
        if process.is_alive():
            process.kill()


async def paced(chunks: Iterable[bytes], rate: float | None) -> AsyncIterator[bytes]:
    """The chunks as a link of `rate` bytes/s delivers them (None: as fast as loopback takes them)."""
    start, sent = time.perf_counter(), 0
    for chunk in chunks:
        sent += len(chunk)
        if rate is not None:
            await asyncio.sleep(max(0.0, start + sent / rate - time.perf_counter()))
        yield chunk


async def push(
    channel, items, version: int, rate: float | None, base: rollout_pb2.DeltaBase | None = None
) -> tuple[float, rollout_pb2.UpdateWeightsResponse]:
    """Seconds from the first chunk to the service's reply, and the reply."""
    start = time.perf_counter()
    chunks = encode_state_dict_wire(items, version, delta_base=base, full_set=True)
    reply = await update_weights_method(channel)(paced(chunks, rate), timeout=600)
    return time.perf_counter() - start, reply


# --- one run --------------------------------------------------------------------------------------


@dataclass
class Row:
    model: str
    lr: float
    dtype: str
    step: int
    changed: float
    full_mb: float
    delta_mb: float
    diff_s: float
    fp_s: float
    loop_full: float
    loop_delta: float
    link_full: float
    link_delta: float

    def line(self) -> str:
        return (
            f"{self.model:>8} {self.lr:7.0e} {self.dtype:>4} {self.step:>4} {self.changed:8.4f} "
            f"{self.full_mb:8.1f} {self.delta_mb:8.2f} {self.full_mb / self.delta_mb:7.1f} "
            f"{self.diff_s:6.2f} {self.fp_s:6.3f} {self.loop_full:6.2f} {self.loop_delta:6.2f} "
            f"{self.loop_full / self.loop_delta:6.1f} {self.link_full:6.2f} {self.link_delta:6.2f} "
            f"{self.link_full / self.link_delta:6.1f} {self.link_delta - self.diff_s:6.2f} "
            f"{100 * self.fp_s / self.link_delta:5.1f}"
        )


HEADER = (
    f"{'model':>8} {'lr':>7} {'push':>4} {'step':>4} {'changed':>8} {'full MB':>8} {'delta MB':>8} "
    f"{'x fewer':>7} {'diff s':>6} {'fp s':>6} {'loop':>6} {'loop':>6} {'x':>6} {'1Gb/s':>6} {'1Gb/s':>6} "
    f"{'x':>6} {'1Gb/s':>6} {'fp %':>5}\n"
    f"{'':>8} {'':>7} {'':>4} {'':>4} {'':>8} {'':>8} {'':>8} {'':>7} {'':>6} {'':>6} {'full':>6} "
    f"{'delta':>6} {'faster':>6} {'full':>6} {'delta':>6} {'faster':>6} {'wire':>6} {'':>5}"
)


async def measure(name: str, lr: float, dtype: str, load, steps: int, address: str) -> list[Row]:
    """`steps` GRPO updates of a fresh model; from the second on, the delta and the full push of each."""
    model = load()
    trainer = trainer_for(model, lr)
    vocab = model.config.vocab_size
    channel = create_channel(address, ChannelConfig())
    rows = []
    try:
        previous: dict[str, torch.Tensor] | None = None
        expected: Fingerprint | None = None
        for step in range(1, steps + 1):
            trainer.update(synthetic_groups(step, num_groups=4, group_size=4, vocab_size=vocab))
            current = snapshot(model, DTYPES[dtype])
            if previous is None or expected is None:  # the first push: whole
                _, reply = await push(channel, list(current.items()), step, None)
                previous, expected = current, fingerprint(current)
                assert Fingerprint.from_proto(reply.fingerprint) == expected, "the rollout serves other bits"
                continue
            started = time.perf_counter()
            diff = diff_state_dicts(previous, current)
            diff_s = time.perf_counter() - started
            started = time.perf_counter()
            new_fp = fingerprint(current)
            fp_s = time.perf_counter() - started
            base = rollout_pb2.DeltaBase(policy_version=step - 1, fingerprint=expected.to_proto())
            seconds = {}
            for label, rate in (("loop", None), ("link", LINK_BYTES_PER_S)):
                if label == "link":  # back to the previous version, untimed, for the link's delta
                    await push(channel, list(previous.items()), step - 1, None)
                delta_s, reply = await push(channel, diff.items, step, rate, base)
                assert Fingerprint.from_proto(reply.fingerprint) == new_fp, "delta push: fingerprint mismatch"
                full_s, reply = await push(channel, list(current.items()), step, rate)
                assert Fingerprint.from_proto(reply.fingerprint) == new_fp, "full push: fingerprint mismatch"
                seconds[label] = (full_s, delta_s + diff_s)
            previous, expected = current, new_fp
            row = Row(
                name, lr, dtype, step, diff.fraction_changed, diff.full_bytes / MB, diff.wire_bytes / MB,
                diff_s, fp_s, *seconds["loop"], *seconds["link"],
            )  # fmt: skip
            rows.append(row)
            print(row.line(), flush=True)
    finally:
        await channel.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+", default=["embedded", "100m"], choices=["embedded", *SHAPES])
    parser.add_argument("--lrs", nargs="+", type=float, default=[1e-6, 1e-5])
    parser.add_argument("--dtypes", nargs="+", default=list(DTYPES), choices=list(DTYPES))
    parser.add_argument("--steps", type=int, default=4, help="GRPO updates per run (deltas from step 2)")
    add_record_flag(parser, SECTION)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with Report(SECTION) as report, tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        print(machine_description("learner 1 thread, rollout 1 thread (its own process)"))
        print(HEADER)
        rows: list[Row] = []
        for name in args.models:
            load = model_loader(name, workdir)
            for dtype in args.dtypes:
                with rollout_process(load().to(DTYPES[dtype]), dtype, workdir) as address:
                    for lr in args.lrs:
                        rows += asyncio.run(measure(name, lr, dtype, load, args.steps, address))
        goal = [r for r in rows if r.lr == 1e-6 and r.dtype == "bf16"]
        if goal:
            fewer = min(r.full_mb / r.delta_mb for r in goal)
            faster = min(r.link_full / r.link_delta for r in goal)
            wire = min(r.link_full / (r.link_delta - r.diff_s) for r in goal)
            share = max(100 * r.fp_s / r.link_delta for r in goal)
            print(
                f"\nlr 1e-6, bf16, steps 2+, at worst: {fewer:.1f}x fewer bytes (goal >= 10x); the push over "
                f"1 Gbit/s {faster:.1f}x faster with the diff, {wire:.1f}x without it (goal >= 5x); the "
                f"fingerprint {share:.1f}% of the delta push (goal <= 10%)"
            )
    if args.record:
        print(f"recorded in {report.save(sys.argv)}")


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
