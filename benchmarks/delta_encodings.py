"""How well each delta encoding compresses a real update, tensor by tensor: the codec's choices, measured.

    uv run python benchmarks/delta_encodings.py                  # the embedded warm model and the 3.4M shape
    uv run python benchmarks/delta_encodings.py --models embedded 100m --record

`grpo_common.weights.delta` sends each changed tensor as SPARSE_XOR below `PLANES_MIN_FRACTION` (10%)
of its elements changed and as PLANES_XOR from there on, compressed with zstd level 1 (the reasons are
in its module docstring). This script checks those choices on real GRPO updates (the learner's
Trainer and AdamW on synthetic scored groups, as benchmarks/delta_push.py makes them; from the second
step on, each step's snapshot in the push dtype against the previous one) by encoding every changed
tensor BOTH ways, at zstd levels 1, 3 and 9, and printing:

- per run (model, lr, push dtype): the changed tensors' raw MB; the wire MB of the codec's own choice,
  of SPARSE_XOR everywhere, of PLANES_XOR everywhere and of the smaller of the two per tensor (the best
  a codec computing both could do); raw / codec = the compression ratio; and the compression CPU
  seconds of the codec's choice against computing both;
- per band of the changed fraction: how many tensors, in how many of them each encoding was the
  smaller, and the median of sparse bytes / planes bytes;
- zstd level 3 and 9 against level 1: bytes and compression CPU of the codec's choice.

Byte counts do not depend on the machine's load; CPU seconds do (the provenance line says the load).
"""

from __future__ import annotations

import argparse
import functools
import itertools
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import zstandard
from delta_push import DTYPES, model_loader, snapshot, trainer_for  # benchmarks/delta_push.py
from grpo_common.weights.delta import (
    PLANES_MIN_FRACTION,
    ZSTD_LEVEL,
    Encoding,
    diff_tensor,
    element_bits,
    planes_xor_payload,
    sparse_xor_payload,
)
from grpo_learner.data.synthetic import synthetic_groups
from model_shapes import SHAPES, machine_description  # benchmarks/model_shapes.py
from results_file import Report, add_record_flag  # benchmarks/results_file.py

SECTION = "Delta encodings: compression by tensor"  # of benchmarks/RESULTS.md, written with --record
LEVELS = (1, 3, 9)  # zstd levels compared; the codec's is ZSTD_LEVEL
BANDS = (0.0, 0.01, 0.05, 0.10, 0.20, 0.50, 1.01)  # changed-fraction bands (the codec switches at 0.10)
MB = 1e6


@dataclass
class TensorSizes:
    """One changed tensor of one step: its changed fraction, raw bytes, and each encoding's bytes and CPU."""

    fraction: float
    raw: int
    sparse: dict[int, int] = field(default_factory=dict)  # zstd level -> bytes
    planes: dict[int, int] = field(default_factory=dict)
    sparse_s: dict[int, float] = field(default_factory=dict)  # zstd level -> compression seconds
    planes_s: dict[int, float] = field(default_factory=dict)

    @property
    def tries_planes(self) -> bool:
        """The encoding the codec computes: planes from PLANES_MIN_FRACTION changed on, else sparse."""
        return self.fraction >= PLANES_MIN_FRACTION

    def codec_bytes(self, level: int) -> int:
        """The wire bytes of the codec's choice at `level`: its encoding, or the tensor whole if smaller."""
        return min((self.planes if self.tries_planes else self.sparse)[level], self.raw)

    def codec_seconds(self, level: int) -> float:
        return (self.planes_s if self.tries_planes else self.sparse_s)[level]


def timed(encode: Callable[[], bytes]) -> tuple[int, float]:
    started = time.process_time()
    payload = encode()
    return len(payload), time.process_time() - started


def sizes_of(base: torch.Tensor, new: torch.Tensor) -> TensorSizes | None:
    """Both encodings of one tensor's change at every level; None when no bit changed."""
    change = diff_tensor(base, new)
    if change.changed == 0:
        return None
    old_bits, new_bits = element_bits(base).numpy(), element_bits(new).numpy()
    differs = np.not_equal(old_bits, new_bits)
    sizes = TensorSizes(
        fraction=change.changed / change.numel,
        raw=change.numel * old_bits.itemsize,
    )
    sent = change.encoded.encoding if change.encoded is not None else Encoding.RAW
    # the codec's own pick, as this script re-derives it (a check that the figures describe the codec)
    expected = Encoding.PLANES_XOR if sizes.tries_planes else Encoding.SPARSE_XOR
    assert sent in (expected, Encoding.RAW), f"diff_tensor sent {sent.name}, expected {expected.name}"
    for level in LEVELS:
        compressor = zstandard.ZstdCompressor(level=level)
        sizes.sparse[level], sizes.sparse_s[level] = timed(
            functools.partial(sparse_xor_payload, old_bits, new_bits, differs, compressor)
        )
        sizes.planes[level], sizes.planes_s[level] = timed(
            functools.partial(planes_xor_payload, old_bits, new_bits, compressor)
        )
    return sizes


def measure(load: Callable, lr: float, dtype: str, steps: int) -> list[TensorSizes]:
    """`steps` GRPO updates of a fresh model; every changed tensor of steps 2.. encoded both ways."""
    model = load()
    trainer = trainer_for(model, lr)
    found: list[TensorSizes] = []
    previous = None
    for step in range(1, steps + 1):
        trainer.update(synthetic_groups(step, num_groups=4, group_size=4, vocab_size=model.config.vocab_size))
        current = snapshot(model, DTYPES[dtype])
        if previous is not None:
            found += [s for name in current if (s := sizes_of(previous[name], current[name])) is not None]
        previous = current
    return found


def run_line(label: str, tensors: list[TensorSizes]) -> str:
    raw = sum(t.raw for t in tensors)
    codec = sum(t.codec_bytes(ZSTD_LEVEL) for t in tensors)
    sparse = sum(min(t.sparse[ZSTD_LEVEL], t.raw) for t in tensors)
    planes = sum(min(t.planes[ZSTD_LEVEL], t.raw) for t in tensors)
    best = sum(min(t.sparse[ZSTD_LEVEL], t.planes[ZSTD_LEVEL], t.raw) for t in tensors)
    codec_s = sum(t.codec_seconds(ZSTD_LEVEL) for t in tensors)
    both_s = sum(t.sparse_s[ZSTD_LEVEL] + t.planes_s[ZSTD_LEVEL] for t in tensors)
    return (
        f"{label:<22} {len(tensors):>7} {raw / MB:8.2f} {codec / MB:8.3f} {raw / codec:6.1f} "
        f"{sparse / MB:8.3f} {planes / MB:8.3f} {best / MB:8.3f} {100 * codec / best - 100:6.1f} "
        f"{codec_s:7.3f} {both_s:7.3f}"
    )


RUN_HEADER = (
    f"{'model lr push':<22} {'tensors':>7} {'raw MB':>8} {'codec MB':>8} {'ratio':>6} "
    f"{'sparse':>8} {'planes':>8} {'best':>8} {'+% vs':>6} {'codec':>7} {'both':>7}\n"
    f"{'':<22} {'':>7} {'':>8} {'':>8} {'':>6} {'MB':>8} {'MB':>8} {'MB':>8} {'best':>6} "
    f"{'CPU s':>7} {'CPU s':>7}"
)


def band_lines(tensors: list[TensorSizes]) -> list[str]:
    lines = [
        f"{'changed fraction':<18} {'tensors':>7} {'sparse smaller':>14} {'planes smaller':>14} "
        f"{'median sparse/planes':>20}"
    ]
    for low, high in itertools.pairwise(BANDS):
        band = [t for t in tensors if low <= t.fraction < high]
        if not band:
            continue
        sparse_wins = sum(t.sparse[ZSTD_LEVEL] < t.planes[ZSTD_LEVEL] for t in band)
        ratio = statistics.median(t.sparse[ZSTD_LEVEL] / t.planes[ZSTD_LEVEL] for t in band)
        lines.append(
            f"{f'{low:.0%} - {min(high, 1.0):.0%}':<18} {len(band):>7} {sparse_wins:>14} "
            f"{len(band) - sparse_wins:>14} {ratio:>20.2f}"
        )
    return lines


def level_lines(tensors: list[TensorSizes]) -> list[str]:
    base_bytes = sum(t.codec_bytes(ZSTD_LEVEL) for t in tensors)
    base_s = sum(t.codec_seconds(ZSTD_LEVEL) for t in tensors)
    return [
        f"zstd level {level}: the codec's choice {sum(t.codec_bytes(level) for t in tensors) / MB:.3f} MB "
        f"({100 * sum(t.codec_bytes(level) for t in tensors) / base_bytes:.1f}% of level {ZSTD_LEVEL}'s), "
        f"compression CPU {sum(t.codec_seconds(level) for t in tensors):.3f} s "
        f"({sum(t.codec_seconds(level) for t in tensors) / base_s:.1f}x level {ZSTD_LEVEL}'s)"
        for level in LEVELS
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+", default=["embedded", "small"], choices=["embedded", *SHAPES])
    parser.add_argument("--lrs", nargs="+", type=float, default=[1e-6, 1e-5])
    parser.add_argument("--dtypes", nargs="+", default=list(DTYPES), choices=list(DTYPES))
    parser.add_argument("--steps", type=int, default=3, help="GRPO updates per run (deltas from step 2)")
    add_record_flag(parser, SECTION)
    args = parser.parse_args()
    torch.set_num_threads(1)
    every: list[TensorSizes] = []
    with Report(SECTION) as report, tempfile.TemporaryDirectory() as tmp:
        print(machine_description("1 thread; compression CPU is process time"))
        print(
            f"steps 2-{args.steps} per run; the codec: zstd level {ZSTD_LEVEL}, sparse below "
            f"{PLANES_MIN_FRACTION:.0%} changed, planes from there on"
        )
        print(RUN_HEADER)
        for name in args.models:
            load = model_loader(name, Path(tmp))
            for dtype in args.dtypes:
                for lr in args.lrs:
                    tensors = measure(load, lr, dtype, args.steps)
                    every += tensors
                    print(run_line(f"{name} {lr:.0e} {dtype}", tensors), flush=True)
        print(run_line("all runs", every))
        print()
        print("\n".join(band_lines(every)))
        print()
        print("\n".join(level_lines(every)))
    if args.record:
        print(f"recorded in {report.save(sys.argv)}")


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
