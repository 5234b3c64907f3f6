"""A process sandbox for untrusted programs: namespaces, rlimits, an unprivileged uid, a wall-clock kill.

`Sandbox(limits).run(files, argv, stdin)` runs `python -I -S *argv` on the given files in a throwaway
working directory and returns a `RunResult`; `probe_isolation()` says whether this kernel lets the
sandbox cut the network (checked once at start-up; its users, the reward service's `code` task and the
rollout service's `python` environment, refuse to run programs without it unless their operator opted in
to unsafe execution, see `probe.choose_sandbox`).
"""

from grpo_common.sandbox.limits import DEFAULT_SANDBOX_LIMITS, SandboxLimits
from grpo_common.sandbox.runner import RunResult, Sandbox, SandboxError

__all__ = ["DEFAULT_SANDBOX_LIMITS", "RunResult", "Sandbox", "SandboxError", "SandboxLimits"]
