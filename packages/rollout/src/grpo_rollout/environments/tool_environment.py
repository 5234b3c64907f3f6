"""One tool, one call per turn: the episode logic the built-in calculator and Python environments share.

Each model turn either ends with a call (see `tool_calls` for the two syntaxes) or ends the episode. A
call runs the tool on its one argument and the answer goes back as the observation; a call the tool
refuses (bad syntax, a limit, an error) is answered `error: MESSAGE` and counted as a tool error, and the
episode goes on, so the model can read the message and try again (up to the request's turn limit).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from grpo_rollout.environments.contract import EpisodeStart, ModelTurn, StepResult
from grpo_rollout.environments.tool_calls import ToolCallSyntax, ToolDescription, tool_call_syntax


class ToolFormatConfig(BaseModel):
    """The config key every built-in tool environment takes: which call syntax the model uses."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    format: Literal["tags", "chat"] = "tags"


@dataclass(frozen=True)
class ToolAnswer:
    """What one call produced: the observation's content, and whether it is an error."""

    content: str
    error: bool = False


class SingleToolEnvironment:
    """Base of a one-tool environment; a subclass sets `tool` and implements `call`.

    Stateless across episodes (the per-episode state is the EpisodeStart itself), so one instance serves
    every episode of a request from any number of threads.
    """

    tool: ToolDescription

    def __init__(self, format_name: str) -> None:
        self.syntax: ToolCallSyntax = tool_call_syntax(format_name, self.tool)
        self.stop_strings = self.syntax.stop_strings
        self.tools = self.syntax.tools

    def call(self, argument: str) -> ToolAnswer:
        raise NotImplementedError

    def reset(self, start: EpisodeStart) -> EpisodeStart:
        return start

    def step(self, state: EpisodeStart, turn: ModelTurn) -> StepResult:
        found = self.syntax.parse(turn.text)
        if found is None:
            return StepResult(done=True)
        started = time.monotonic()
        answer = ToolAnswer(f"error: {found.error}", error=True) if found.error else self.call(found.argument)
        info: Mapping[str, Any] = {"tool": self.tool.name, "tool_seconds": time.monotonic() - started}
        return StepResult(
            observation=self.syntax.observation(answer.content, state),
            observation_token_ids=self.syntax.observation_ids(answer.content, state),
            tool_calls=1,
            tool_errors=int(answer.error),
            info=info,
        )
