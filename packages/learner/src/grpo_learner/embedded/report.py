"""The table `grpo train` prints at the end of an embedded run."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from grpo_learner.data.episodes import ENVIRONMENT_REWARD
from grpo_learner.data.episodes import PREFIX as EPISODE
from grpo_learner.embedded.default_run import HELDOUT_FILE, REPORTED, WITHOUT_ENVIRONMENT, RunSummary
from grpo_learner.embedded.tasks import EMBEDDED_TASKS
from grpo_learner.eval.runner import GREEDY_CHARS, GREEDY_REWARD
from grpo_learner.monitoring.metrics import TimingTotals, read_metrics

VALUE_ROWS = (GREEDY_REWARD, GREEDY_CHARS)
LABELS = {"greedy_accuracy": "accuracy (greedy)", WITHOUT_ENVIRONMENT: "greedy, without the tool"}
# The episodes' tool use (means over the held-out episodes); the other episode/ figures are in summary.json.
EPISODE_ROWS = {
    f"{EPISODE}with_tool_calls": "episodes calling the tool",
    f"{EPISODE}tool_calls": "tool calls per episode",
    f"{EPISODE}tool_errors": "tool errors per episode",
    f"{EPISODE}turns": "turns per episode",
}


def print_summary(summary: RunSummary, console: Console | None = None) -> None:
    console = console or Console()
    run_dir = Path(summary.run_dir)
    table = Table(title=EMBEDDED_TASKS[summary.task].title)
    table.add_column("held-out")
    table.add_column("warm-up model", justify="right")
    table.add_column("after GRPO", justify="right")
    table.add_column("change", justify="right")
    # greedy, pass@1, maj@8 by default; whatever else [eval] asked for after them; then tool use; the
    # greedy mean reward and length only where the task labels them (a reward model's score)
    labels = {**LABELS, **EMBEDDED_TASKS[summary.task].labels}
    metrics = [m for m in REPORTED if m in summary.heldout_before]
    skipped = (EPISODE, ENVIRONMENT_REWARD, *(m for m in VALUE_ROWS if m not in labels))
    metrics += [m for m in summary.heldout_before if m not in metrics and not m.startswith(skipped)]
    metrics += [m for m in EPISODE_ROWS if m in summary.heldout_before]
    for metric in (m for m in metrics if m in summary.heldout_after):
        before, after = summary.heldout_before[metric], summary.heldout_after[metric]
        label = labels.get(metric) or EPISODE_ROWS.get(metric) or metric
        counts = metric.startswith(EPISODE) and metric != f"{EPISODE}with_tool_calls"
        if counts or metric in VALUE_ROWS:  # counts and values, not shares
            table.add_row(label, f"{before:.2f}", f"{after:.2f}", f"{after - before:+.2f}")
            continue
        table.add_row(
            label, f"{100 * before:.1f}%", f"{100 * after:.1f}%", f"{100 * (after - before):+.1f} points"
        )
    console.print(table)
    wall = f"{summary.warmup_seconds:.0f} s / {summary.grpo_seconds:.0f} s / {summary.wall_seconds:.0f} s"
    console.print(f"held-out problems: {summary.heldout_problems}   GRPO steps: {summary.steps}")
    console.print(f"wall time (warm-up / GRPO / total): {wall}")
    console.print(f"learner tokens/s (mean): {summary.tokens_per_second:.0f}")
    if summary.reward_model_pair_accuracy is not None:
        ranked = f"{100 * summary.reward_model_pair_accuracy:.1f}%"
        console.print(f"reward model: held-out preference pairs ranked right {ranked}")
    trained = f"{summary.trainable_parameters:,} of {summary.total_parameters:,}"
    console.print(f"trainable parameters: {trained}")
    if (split := phase_split(run_dir)) is not None:
        console.print(f"s/step: wait rollouts / update / push: {split}")
    console.print(f"summary:     {run_dir / 'summary.json'}")
    console.print(f"held-out:    {run_dir / HELDOUT_FILE}  (grpo eval --data)")
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
