"""Whether this kernel lets the sandbox isolate a program, and whether the operator allows it not to.

The probe runs a real program through the isolated sandbox and checks, from inside, that it is PID 1 of
its own namespace, not root, sees an empty environment, and cannot reach a TCP listener the probe opens on
loopback. Anything short of that (no unshare permission in a container, no mount_setattr on an old kernel)
means "unavailable", with the reason. The operator's explicit unsafe opt-in is the service setting
`allow_unsafe_code` (`--allow-unsafe-code`), which reaches the worker processes as the environment
variable the config also reads, ALLOW_UNSAFE_ENV.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass

from pydantic import TypeAdapter, ValidationError

from grpo_reward.sandbox.limits import DEFAULT_SANDBOX_LIMITS, SandboxLimits
from grpo_reward.sandbox.runner import Sandbox, SandboxError

logger = logging.getLogger(__name__)

ALLOW_UNSAFE_ENV = "GRPO_REWARD_ALLOW_UNSAFE_CODE"

_PROBE = """
import json, os, socket, sys
try:
    socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1).close()
    network = "reached the probe's loopback listener"
except OSError as error:
    network = ""
print(json.dumps({"pid": os.getpid(), "uid": os.getuid(), "env": sorted(os.environ), "network": network}))
"""


@dataclass(frozen=True)
class IsolationStatus:
    """`available`: the sandbox can run programs isolated; `reason` says why not (or what it checked)."""

    available: bool
    reason: str


def _check_report(stdout: str, root: bool) -> str:
    """'' when the probe program's report shows full isolation, else what is missing."""
    report = json.loads(stdout)
    if report["network"]:
        return f"the network is not cut off ({report['network']})"
    if report["pid"] != 1:
        return f"no PID namespace (the program ran as pid {report['pid']})"
    if root and report["uid"] == 0:
        return "the program kept uid 0"
    extra = [name for name in report["env"] if name != "LC_CTYPE"]  # Python's own C-locale coercion
    if extra:
        return f"the environment is not empty ({', '.join(extra)})"
    return ""


@functools.cache
def probe_isolation() -> IsolationStatus:
    """Run the probe once per process (about one sandbox start) and remember the answer."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        try:
            result = Sandbox().run({"probe.py": _PROBE}, ["probe.py", str(port)])
        except (SandboxError, OSError) as error:
            return IsolationStatus(False, f"the sandbox cannot isolate programs here: {error}")
    if not result.ok:
        return IsolationStatus(
            False, f"the isolation probe failed ({result.describe()}): {result.stderr[-300:]}"
        )
    try:
        missing = _check_report(result.stdout, root=os.geteuid() == 0)
    except (ValueError, KeyError) as error:
        return IsolationStatus(False, f"the isolation probe printed no report ({error})")
    if missing:
        return IsolationStatus(False, f"the sandbox cannot isolate programs here: {missing}")
    return IsolationStatus(True, "network, PID and mount namespaces, unprivileged uid, empty environment")


def unsafe_opt_in(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the operator passed the explicit unsafe flag (ALLOW_UNSAFE_ENV, as pydantic reads a bool)."""
    raw = (os.environ if environ is None else environ).get(ALLOW_UNSAFE_ENV, "")
    if not raw:
        return False
    try:
        return TypeAdapter(bool).validate_python(raw)
    except ValidationError:
        logger.warning("%s=%r is not a boolean; treating it as false", ALLOW_UNSAFE_ENV, raw)
        return False


def code_sandbox(
    status: IsolationStatus, allow_unsafe: bool, limits: SandboxLimits = DEFAULT_SANDBOX_LIMITS
) -> Sandbox | str:
    """The sandbox the `code` task may use, or the refusal message when it may not run programs at all."""
    if status.available:
        return Sandbox(limits)
    if allow_unsafe:
        return Sandbox(limits, isolate=False)
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
