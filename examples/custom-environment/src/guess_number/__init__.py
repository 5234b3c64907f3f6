"""Guess the number: the model writes `<guess>N</guess>`, the environment answers `<hint>higher</hint>`,
`<hint>lower</hint>` or `<hint>correct</hint>` (then the episode ends with a per-turn reward, config
key `reward`, default 1).

The secret is the row's reference (`EpisodeStart.reference`). A factory is called once per request with
the request's `EnvironmentSpec.config_json` object; per-episode data lives in the state `reset` returns.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_GUESS = re.compile(r"<guess>\s*(-?\d{1,18})\s*</guess>\s*$")


class GuessNumber:
    stop_strings = ("</guess>",)
    tools: tuple[Mapping[str, Any], ...] = ()

    def __init__(self, config: Mapping[str, Any]) -> None:
        unknown = set(config) - {"reward"}
        if unknown:
            raise ValueError(f"unknown config keys {sorted(unknown)}; guess-number takes 'reward'")
        self.reward = float(config.get("reward", 1.0))

    def reset(self, start: Any) -> int:
        return int(start.reference)

    def step(self, secret: int, turn: Any) -> Any:
        from grpo_rollout.environments import StepResult  # the service that calls us has it installed

        found = _GUESS.search(turn.text)
        if found is None:
            return StepResult(done=True)
        guess = int(found.group(1))
        if guess == secret:
            return StepResult(observation="<hint>correct</hint>", done=True, reward=self.reward, tool_calls=1)
        hint = "higher" if guess < secret else "lower"
        return StepResult(observation=f"<hint>{hint}</hint>", tool_calls=1)
