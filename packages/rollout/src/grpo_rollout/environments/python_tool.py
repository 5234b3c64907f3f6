"""The `python` environment: the model's code runs in the process sandbox and it reads what it printed.

The model writes `<python>CODE</python>` (format "tags", the default; the turn stops on `</python>`) and
reads `<output>STDOUT</output>`, stdout cut to `max_output_chars` (then ending in `[truncated]`; a program
that writes more than 4x that, at least 64 KiB, is killed there and shows the same), or
`<output>error: ...</output>` when the program exits non-zero (its exit code and the tail of its stderr,
e.g. the traceback's last line), spends its CPU-time limit, reaches the wall-clock backstop (10 x the
limit + 2 s: only a program that sleeps or a starved machine does), or is killed by a signal. With format
"chat" the call is `<tool_call>{"name": "python", "arguments": {"code": "..."}}</tool_call>`.

Each call is a fresh program (no state carries over between calls) in `grpo_common.sandbox`: no network,
its own PID and mount namespaces, a private read-only root (no host files), no capabilities and
no_new_privs (setuid binaries gain nothing), an unprivileged uid, rlimits on CPU, memory, file size and
processes, an empty environment and a wall-clock kill; at most the service's `sandbox.max_concurrent`
programs run at once (the other calls wait). Where this kernel cannot isolate programs the environment is
refused when a request names it, unless the rollout service's operator set ALLOW_UNSAFE_ENV=1 in the
service's environment (then programs run with rlimits only and the network open). A request cannot opt
in: its config only tightens or loosens the limits below within fixed bounds.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from grpo_common.sandbox import Sandbox, SandboxError, SandboxLimits
from grpo_common.sandbox.probe import IsolationStatus, choose_sandbox, probe_isolation, unsafe_opt_in
from grpo_common.sandbox.runner import RunResult
from pydantic import Field

from grpo_rollout.environments.contract import ENVIRONMENTS
from grpo_rollout.environments.tool_calls import ToolDescription
from grpo_rollout.environments.tool_environment import SingleToolEnvironment, ToolAnswer, ToolFormatConfig

ALLOW_UNSAFE_ENV = "GRPO_ROLLOUT_ALLOW_UNSAFE_CODE"
STDERR_TAIL_CHARS = 300
TRUNCATED = "[truncated]"
WALL_BACKSTOP_FACTOR = 10  # as the reward service's code task: load cannot make a program time out

PYTHON = ToolDescription(
    name="python",
    description="Run a Python program (standard library only, no network) and return what it printed.",
    argument="code",
    argument_description="The program; print the values you need",
    call_tag="python",
    result_tag="output",
)


class PythonToolConfig(ToolFormatConfig):
    """`EnvironmentSpec.config_json` of the python environment (every key optional)."""

    time_limit_s: float = Field(default=5.0, gt=0, le=60)  # CPU seconds of all its processes together
    # a request's own bounds: each of a request's episodes may run a program at once
    memory_mb: int = Field(default=512, ge=64, le=1024)  # RLIMIT_AS of the program
    max_output_chars: int = Field(default=2000, gt=0, le=16_384)  # of stdout, in the observation
    max_code_chars: int = Field(default=20_000, gt=0, le=1_000_000)

    def sandbox_limits(self) -> SandboxLimits:
        """The sandbox's limits for one call; the program is killed once it writes 4x what is shown."""
        return SandboxLimits(
            cpu_s=self.time_limit_s,
            wall_s=WALL_BACKSTOP_FACTOR * self.time_limit_s + 2.0,
            memory_bytes=self.memory_mb * 1024 * 1024,
            output_bytes=max(64 * 1024, 4 * self.max_output_chars),
        )


def python_sandbox(status: IsolationStatus, allow_unsafe: bool, limits: SandboxLimits) -> Sandbox:
    """The sandbox the python environment runs calls in; raises ValueError (the refusal) when it may not."""
    sandbox = choose_sandbox(status, allow_unsafe, limits)
    if sandbox is None:
        raise ValueError(
            f"the python environment is refused: {status.reason}. Run the rollout service where "
            f"unprivileged namespaces are allowed, or start it with {ALLOW_UNSAFE_ENV}=1 to run the "
            "model's programs with rlimits only and the network open"
        )
    return sandbox


@ENVIRONMENTS.register("python")
class PythonEnvironment(SingleToolEnvironment):
    tool = PYTHON

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.settings = PythonToolConfig.model_validate(dict(config))
        self.sandbox = python_sandbox(
            probe_isolation(), unsafe_opt_in(ALLOW_UNSAFE_ENV, os.environ), self.settings.sandbox_limits()
        )
        super().__init__(self.settings.format)

    def call(self, argument: str) -> ToolAnswer:
        limit = self.settings.max_code_chars
        if len(argument) > limit:
            return ToolAnswer(f"error: the program is {len(argument)} characters; the limit is {limit}", True)
        try:
            result = self.sandbox.run({"main.py": argument}, ["main.py"])
        except SandboxError as error:
            return ToolAnswer(f"error: the sandbox failed ({error})", error=True)
        return answer(result, self.settings)


def answer(result: RunResult, settings: PythonToolConfig) -> ToolAnswer:
    """What the model reads about one run: its stdout, or why it failed."""
    if result.timed_out:
        wall_s = settings.sandbox_limits().wall_s
        return ToolAnswer(f"error: no result after {wall_s:g} s wall-clock (killed)", error=True)
    if result.cpu_limited:
        return ToolAnswer(
            f"error: CPU time limit of {settings.time_limit_s:g} s exceeded (killed)", error=True
        )
    if result.output_exceeded or (result.exit_code == 0 and len(result.stdout) > settings.max_output_chars):
        return ToolAnswer(result.stdout[: settings.max_output_chars] + TRUNCATED)
    if result.exit_code is None:
        tail = _tail(result.stderr)
        return ToolAnswer(f"error: killed by signal {result.signal_number}{tail}", error=True)
    if result.exit_code != 0:
        return ToolAnswer(f"error: exit code {result.exit_code}{_tail(result.stderr)}", error=True)
    return ToolAnswer(result.stdout)


def _tail(stderr: str) -> str:
    text = stderr.strip()
    if not text:
        return ""
    return ": " + (text if len(text) <= STDERR_TAIL_CHARS else "..." + text[-STDERR_TAIL_CHARS:])
