"""A process sandbox for untrusted programs: namespaces, rlimits, an unprivileged uid, a wall-clock kill.

`Sandbox(limits).run(files, argv, stdin)` runs `python -I -S *argv` on the given files in a throwaway
working directory and returns a `RunResult`; `probe_isolation()` says whether this kernel lets the
sandbox cut the network (checked once at start-up; the `code` task refuses to run without it unless the
operator opted in to unsafe execution).
"""

from grpo_reward.sandbox.limits import DEFAULT_SANDBOX_LIMITS, SandboxLimits
from grpo_reward.sandbox.runner import RunResult, Sandbox, SandboxError

__all__ = ["DEFAULT_SANDBOX_LIMITS", "RunResult", "Sandbox", "SandboxError", "SandboxLimits"]
