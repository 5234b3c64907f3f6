"""Environments for the episode tests, loaded into real rollout services with `--plugin` (or
`ENVIRONMENTS.load_reference` in-process). Each takes its settings from EnvironmentSpec.config_json.

- `FixedObservation`: answers every turn with `observation` (default " ok:") and says done after
  `done_after` steps (default 2); `stop_string` (default "|") ends a model turn; `step_sleep_s` makes
  the steps of episode `slow_episode` of every group sleep (`"all"`: every episode's); `raise_on_step`
  makes that step raise; `reward` is its per-step reward; `observation_repeat` repeats the observation
  that many times (a huge one, too big to send in config_json); `reset_sleep_s` makes every reset sleep;
  `tool_calls` is what each step reports (default 1; 0: a turn that called nothing). Every step
  appends (episode index, start, end) to `STEP_LOG`, which the in-process tests read.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from grpo_rollout.environments import EpisodeStart, ModelTurn, StepResult

STEP_LOG: list[tuple[int, float, float]] = []  # (episode index, monotonic start, end) of every step


class FixedObservation:
    tools: tuple = ()

    def __init__(self, config: Mapping[str, Any]) -> None:
        unknown = set(config) - {
            "observation", "done_after", "stop_string", "step_sleep_s", "slow_episode", "raise_on_step",
            "reward", "observation_token_ids", "observation_repeat", "reset_sleep_s", "tool_calls",
        }  # fmt: skip
        if unknown:
            raise ValueError(f"unknown settings {sorted(unknown)}")
        self.observation = str(config.get("observation", " ok:")) * int(config.get("observation_repeat", 1))
        self.observation_token_ids = config.get("observation_token_ids")
        self.done_after = int(config.get("done_after", 2))
        self.stop_strings = (str(config.get("stop_string", "|")),)
        self.step_sleep_s = float(config.get("step_sleep_s", 0.0))
        self.slow_episode = config.get("slow_episode", -1)  # an episode index, or "all"
        self.raise_on_step = int(config.get("raise_on_step", -1))
        self.reward = float(config.get("reward", 0.0))
        self.reset_sleep_s = float(config.get("reset_sleep_s", 0.0))
        self.tool_calls = int(config.get("tool_calls", 1))

    def reset(self, start: EpisodeStart) -> dict[str, Any]:
        time.sleep(self.reset_sleep_s)
        return {"episode": start.episode_index, "steps": 0, "turns": []}

    def step(self, state: dict[str, Any], turn: ModelTurn) -> StepResult:
        started = time.monotonic()
        state["turns"].append(turn.token_ids)
        if turn.index == self.raise_on_step:
            raise RuntimeError("the tool crashed")
        if self.slow_episode in (state["episode"], "all"):
            time.sleep(self.step_sleep_s)
        state["steps"] += 1
        STEP_LOG.append((state["episode"], started, time.monotonic()))
        return StepResult(
            observation=self.observation,
            observation_token_ids=self.observation_token_ids,
            done=state["steps"] >= self.done_after,
            reward=self.reward,
            tool_calls=self.tool_calls,
            tool_errors=0,
        )
