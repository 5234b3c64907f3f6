"""Per-step metrics to `RUN_DIR/metrics.jsonl` and TensorBoard, with a rich progress bar.

Names follow TRL (`reward`, `reward_std`, `frac_reward_zero_std`, `kl`, `entropy`,
`clip_ratio/low_mean`, `clip_ratio/high_mean`, `completions/mean_length`,
`completions/clipped_ratio`, `step_time`, `tokens_per_second`, `policy_version`) so dashboards and
habits carry over; multi-turn runs add `episode/*` (episodes.py), printed in a table of their own
at the end. JSONL is the source of truth (`grpo plot` reads it); TensorBoard is optional.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Mapping
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from grpo_learner.data.episodes import EpisodeTable
from grpo_learner.monitoring.phase_timer import LEARNER_PHASES, PREFIX, UPDATE_PHASES

logger = logging.getLogger(__name__)

METRICS_FILE = "metrics.jsonl"


class MetricsLogger:
    def __init__(
        self,
        run_dir: Path,
        *,
        total_steps: int,
        start_step: int = 0,
        tensorboard: bool = True,
        progress: bool = True,
    ) -> None:
        run_dir.mkdir(parents=True, exist_ok=True)
        self.path = run_dir / METRICS_FILE
        self._file = self.path.open("a")
        self._writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"))
        self._timing = TimingTotals()
        self._episodes = EpisodeTable()  # multi-turn runs only: empty otherwise, and not printed
        self._progress: Progress | None = None
        if progress:
            self._progress = Progress(
                TextColumn("[bold]GRPO"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.description}"),
                TimeRemainingColumn(),
                transient=False,
            )
            self._task = self._progress.add_task("", total=total_steps, completed=start_step)
            self._progress.start()

    def log(self, step: int, metrics: Mapping[str, float]) -> None:
        clean = {k: float(v) for k, v in metrics.items() if isinstance(v, int | float) and math.isfinite(v)}
        self._timing.add(clean)
        self._episodes.add(clean)
        self._file.write(json.dumps({"step": step, "time": time.time(), **clean}) + "\n")
        self._file.flush()
        if self._writer is not None:
            for key, value in clean.items():
                self._writer.add_scalar(key, value, step)
        if self._progress is not None:
            summary = "  ".join(
                f"{short} {clean[key]:.3g}"
                for key, short in (
                    ("reward", "reward"),
                    ("eval/greedy_accuracy", "held-out acc"),
                    ("kl", "kl"),
                    ("tokens_per_second", "tok/s"),
                )
                if key in clean
            )
            self._progress.update(self._task, completed=step, description=summary)
        else:
            logger.info("step %d: %s", step, {k: round(v, 4) for k, v in clean.items()})

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            if self._timing.steps:
                Console().print(self._timing.table())
            if self._episodes.steps:
                Console().print(self._episodes.table())
        else:
            if self._timing.steps:
                logger.info("mean seconds per step: %s", self._timing.means())
            if self._episodes.steps:
                logger.info("episodes, mean per step: %s", self._episodes.means())
        if self._writer is not None:
            self._writer.close()
        self._file.close()


class TimingTotals:
    """Sums of the `timing/*` metrics over the logged steps: the end-of-run table."""

    def __init__(self) -> None:
        self.steps = 0
        self.sums: dict[str, float] = {}

    def add(self, metrics: Mapping[str, float]) -> None:
        if f"{PREFIX}step" not in metrics:
            return
        self.steps += 1
        for key, value in metrics.items():
            if key.startswith(PREFIX):
                self.sums[key] = self.sums.get(key, 0.0) + value

    def means(self) -> dict[str, float]:
        return {key: round(value / self.steps, 4) for key, value in self.sums.items()}

    def table(self) -> Table:
        """Mean seconds per step of each phase and its share of the step's wall time."""
        means = self.means()
        step = means.get(f"{PREFIX}step", 0.0)
        table = Table(title=f"{self.steps} steps: where the time went (mean)")
        table.add_column("phase")
        table.add_column("s/step", justify="right")
        table.add_column("of the step", justify="right")
        rows = [(name, name) for name in LEARNER_PHASES[:2]]
        rows += [(name, f"  {name}") for name in UPDATE_PHASES]
        rows += [(name, name) for name in (*LEARNER_PHASES[2:], "step", "generate", "score")]
        for name, label in rows:
            if (key := f"{PREFIX}{name}") in means:
                overlaps = name in ("generate", "score")  # rollout side: not a share of the learner's step
                share = f"{100 * means[key] / step:.0f}%" if step and not overlaps else ""
                table.add_row(label, f"{means[key]:.3f}", share)
        return table


def read_metrics(run_dir: Path) -> list[dict[str, float]]:
    """One record per step, in step order (steps re-done after a resume replace the first try)."""
    path = run_dir / METRICS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: is {run_dir} a run directory?")
    by_step: dict[int, dict[str, float]] = {}
    for line in path.read_text().splitlines():
        if line.strip():
            record = json.loads(line)
            by_step[int(record["step"])] = record  # after a resume, the re-trained step wins
    return [by_step[step] for step in sorted(by_step)]
