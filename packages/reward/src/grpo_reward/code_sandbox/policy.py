"""When the `code` task may run programs: the probe's verdict plus the operator's explicit unsafe opt-in.

The opt-in is the service setting `allow_unsafe_code` (`--allow-unsafe-code`), which reaches the worker
processes as the environment variable the config also reads, ALLOW_UNSAFE_ENV.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

from grpo_common.sandbox import probe
from grpo_common.sandbox.limits import DEFAULT_SANDBOX_LIMITS, SandboxLimits
from grpo_common.sandbox.probe import IsolationStatus, choose_sandbox, probe_isolation
from grpo_common.sandbox.runner import Sandbox

logger = logging.getLogger(__name__)

ALLOW_UNSAFE_ENV = "GRPO_REWARD_ALLOW_UNSAFE_CODE"


def unsafe_opt_in(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the operator passed --allow-unsafe-code (ALLOW_UNSAFE_ENV, as pydantic reads a bool)."""
    return probe.unsafe_opt_in(ALLOW_UNSAFE_ENV, environ)


def code_sandbox(
    status: IsolationStatus, allow_unsafe: bool, limits: SandboxLimits = DEFAULT_SANDBOX_LIMITS
) -> Sandbox | str:
    """The sandbox the `code` task may use, or the refusal message when it may not run programs at all."""
    sandbox = choose_sandbox(status, allow_unsafe, limits)
    if sandbox is not None:
        return sandbox
    return (
        f"the code task is refused: {status.reason}. Run the reward service where unprivileged "
        f"namespaces are allowed, or pass --allow-unsafe-code ({ALLOW_UNSAFE_ENV}=1) to run programs "
        "with rlimits only and the network open"
    )


def announce_code_sandbox(allow_unsafe: bool) -> IsolationStatus:
    """At service start-up: probe, log what `code` will do, and hand the opt-in to the worker processes
    (they inherit this process's environment; the sandboxed programs never see it)."""
    if allow_unsafe:
        os.environ[ALLOW_UNSAFE_ENV] = "1"
    status = probe_isolation()
    if status.available:
        logger.info("code sandbox: %s", status.reason)
    elif allow_unsafe:
        logger.warning("code sandbox NOT isolated (--allow-unsafe-code): %s", status.reason)
    else:
        logger.warning("%s", code_sandbox(status, allow_unsafe=False))
    return status
