"""`grpo plot RUN_DIR`: one PNG with the curves of a run (matplotlib, no display needed)."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from grpo_learner.monitoring.metrics import read_metrics

CURVES = (
    "reward",
    "correct",
    "reward_std",
    "frac_reward_zero_std",
    "kl",
    "entropy",
    "loss",
    "grad_norm",
    "clip_ratio/low_mean",
    "clip_ratio/high_mean",
    "completions/mean_length",
    "completions/clipped_ratio",
    "learning_rate",
    "tokens_per_second",
)


def plot_run(run_dir: Path, output: Path | None = None) -> Path:
    """Plot every known curve present in the run, plus any `eval/*` metric; returns the PNG path."""
    records = read_metrics(run_dir)
    if not records:
        raise ValueError(f"{run_dir}: metrics.jsonl is empty; nothing to plot yet")
    present = {key for record in records for key in record}
    evals = sorted(k for k in present if k.startswith("eval/"))
    keys = [*evals, *(k for k in CURVES if k in present)]
    cols = 3
    rows = max(1, math.ceil(len(keys) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.2 * rows), squeeze=False)
    for ax, key in zip(axes.flat, keys, strict=False):
        points = [(r["step"], r[key]) for r in records if key in r]
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="." if len(points) < 50 else None)
        ax.set_title(key)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(keys) :]:
        ax.axis("off")
    fig.suptitle(str(run_dir))
    fig.tight_layout()
    output = output or run_dir / "curves.png"
    fig.savefig(output, dpi=100)
    plt.close(fig)
    return output
