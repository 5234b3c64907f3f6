"""Multi-turn episodes on the learner's side: the statistics a completion carries and the per-step metrics.

A completion that is an episode (rollout.proto v1.2, `Completion.episode`) carries `EpisodeStats`:
turns, tool calls and errors, the seconds the tool calls took (the environment's steps that called a
tool, timed in the rollout's step thread: not resets, not the hop to that thread), model vs environment
tokens. The loss never reads them (the loss mask does that job, see rollout_data.py); they become
metrics:

    episode/turns, episode/tool_calls, episode/tool_errors        means per episode
    episode/with_tool_calls                                       share of episodes with a tool call
    episode/model_tokens, episode/environment_tokens              means per episode
    episode/tool_seconds, episode/tool_seconds_mean               sum over the step's episodes, mean
    episode/seconds_per_tool_call                                 tool seconds / tool calls (if any call)
    episode/turn_limit_fraction                                   episodes that hit max_turns
    reward/environment                                            mean of the environment's own rewards

over the completions trained on in the step. A step without episodes (single-turn runs) reports
none of them, so single-turn runs get no empty columns. `EpisodeTable` prints the end-of-run table.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields

from grpo.v1 import rollout_pb2
from rich.table import Table

PREFIX = "episode/"
ENVIRONMENT_REWARD = "reward/environment"


@dataclass(frozen=True)
class EpisodeStats:
    """`grpo.v1.EpisodeStats`, copied from the wire in `from_proto`."""

    turns: int
    tool_calls: int
    tool_errors: int
    tool_seconds: float
    model_tokens: int
    environment_tokens: int
    turn_limit_reached: bool
    environment_reward: float

    @classmethod
    def from_proto(cls, message: rollout_pb2.EpisodeStats) -> EpisodeStats:
        """Field by field: the names are the proto's."""
        return cls(**{f.name: getattr(message, f.name) for f in fields(cls)})


def episode_metrics(episodes: Iterable[EpisodeStats | None]) -> dict[str, float]:
    """The per-step metrics of the module doc over `episodes` (None: a single-turn completion, skipped)."""
    stats = [e for e in episodes if e is not None]
    if not stats:
        return {}
    n = len(stats)
    tool_calls = sum(e.tool_calls for e in stats)
    tool_seconds = sum(e.tool_seconds for e in stats)
    metrics = {
        f"{PREFIX}turns": sum(e.turns for e in stats) / n,
        f"{PREFIX}tool_calls": tool_calls / n,
        f"{PREFIX}tool_errors": sum(e.tool_errors for e in stats) / n,
        f"{PREFIX}with_tool_calls": sum(e.tool_calls > 0 for e in stats) / n,
        f"{PREFIX}tool_seconds": tool_seconds,
        f"{PREFIX}tool_seconds_mean": tool_seconds / n,
        f"{PREFIX}model_tokens": sum(e.model_tokens for e in stats) / n,
        f"{PREFIX}environment_tokens": sum(e.environment_tokens for e in stats) / n,
        f"{PREFIX}turn_limit_fraction": sum(e.turn_limit_reached for e in stats) / n,
        ENVIRONMENT_REWARD: sum(e.environment_reward for e in stats) / n,
    }
    if tool_calls:
        metrics[f"{PREFIX}seconds_per_tool_call"] = tool_seconds / tool_calls
    return metrics


class EpisodeTable:
    """The episode metrics of the first and the last step that had episodes, and their mean over steps."""

    def __init__(self) -> None:
        self.steps = 0
        self.first: dict[str, float] = {}
        self.last: dict[str, float] = {}
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}  # steps that had the metric (seconds_per_tool_call may be absent)

    def add(self, metrics: Mapping[str, float]) -> None:
        values = {k: v for k, v in metrics.items() if k.startswith(PREFIX) or k == ENVIRONMENT_REWARD}
        if not values:
            return
        self.steps += 1
        if not self.first:
            self.first = dict(values)
        self.last = dict(values)
        for key, value in values.items():
            self.sums[key] = self.sums.get(key, 0.0) + value
            self.counts[key] = self.counts.get(key, 0) + 1

    def means(self) -> dict[str, float]:
        return {key: round(value / self.counts[key], 4) for key, value in self.sums.items()}

    def table(self) -> Table:
        table = Table(title=f"{self.steps} steps with multi-turn episodes")
        for column in ("metric", "first step", "last step", "mean"):
            table.add_column(column, justify="left" if column == "metric" else "right")
        means = self.means()
        for key in sorted(means):
            first, last = self.first.get(key), self.last.get(key)
            table.add_row(
                key,
                "" if first is None else f"{first:.3g}",
                "" if last is None else f"{last:.3g}",
                f"{means[key]:.3g}",
            )
        return table
