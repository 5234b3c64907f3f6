"""The table `grpo train` prints at the end of the embedded default run."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from grpo_learner.embedded.default_run import RunSummary
from grpo_learner.metrics import TimingTotals, read_metrics


def print_summary(summary: RunSummary, console: Console | None = None) -> None:
    console = console or Console()
    run_dir = Path(summary.run_dir)
    table = Table(title="GRPO on the embedded default (tiny model, synthetic arithmetic)")
    table.add_column("")
    table.add_column("value", justify="right")
    table.add_row(
        "held-out accuracy, warm-up model (greedy)", f"{100 * summary.heldout_accuracy_before:.1f}%"
    )
    table.add_row("held-out accuracy, after GRPO (greedy)", f"{100 * summary.heldout_accuracy_after:.1f}%")
    gain = 100 * (summary.heldout_accuracy_after - summary.heldout_accuracy_before)
    table.add_row("change", f"{gain:+.1f} points")
    table.add_row("held-out problems", str(summary.heldout_problems))
    table.add_row("GRPO steps", str(summary.steps))
    table.add_row(
        "wall time (warm-up / GRPO / total)",
        f"{summary.warmup_seconds:.0f} s / {summary.grpo_seconds:.0f} s / {summary.wall_seconds:.0f} s",
    )
    table.add_row("learner tokens/s (mean)", f"{summary.tokens_per_second:.0f}")
    if (split := phase_split(run_dir)) is not None:
        table.add_row("s/step: wait rollouts / update / push", split)
    console.print(table)
    console.print(f"summary:     {run_dir / 'summary.json'}")
    console.print(f"metrics:     {run_dir / 'metrics.jsonl'}  (TensorBoard: {run_dir / 'tensorboard'})")
    console.print(f"curves:      {run_dir / 'curves.png'}")
    console.print(f"checkpoints: {run_dir / 'checkpoints'}")
    console.print(f"service logs: {run_dir / 'services'}")


def phase_split(run_dir: Path) -> str | None:
    """Mean seconds per step the learner waited for rollouts, updated and pushed (metrics.jsonl)."""
    totals = TimingTotals()
    for record in read_metrics(run_dir):
        totals.add(record)
    if not totals.steps:
        return None
    means = totals.means()
    phases = ("wait_rollouts", "update", "push")
    return " / ".join(f"{means.get(f'timing/{name}', 0.0):.2f}" for name in phases)
