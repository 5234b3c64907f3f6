"""Whether this kernel lets the sandbox isolate a program, and whether the operator allows it not to.

The probe runs a real program through the isolated sandbox and checks, from inside, that it is PID 1 of
its own namespace, not root, holds no capability and has no_new_privs set, that a setuid-root binary of
the host (`su`, where it exists) runs without privilege too, that it cannot see this service's own files,
sees an empty environment, and cannot reach a TCP listener the probe opens on loopback. Anything short of
that (no unshare permission in a container, no mount_setattr or pivot_root) means "unavailable", with the
reason. Where it is unavailable a service runs untrusted programs only when
its operator opted in explicitly (`unsafe_opt_in` reads the service's own environment variable, e.g. the
reward service's `--allow-unsafe-code`), and then with rlimits only (`choose_sandbox`).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pydantic import TypeAdapter, ValidationError

from grpo_common.sandbox.limits import DEFAULT_SANDBOX_LIMITS, SandboxLimits
from grpo_common.sandbox.runner import Sandbox, SandboxError

logger = logging.getLogger(__name__)

PRIVILEGE_PROBE = Path(__file__).with_name("privilege_probe.py").read_text()
"""Source defining `status_of`, `privileges` and `setuid_run`, for programs that report their privileges."""
SETUID_BINARY = "/usr/bin/su"  # setuid root on every distribution that ships it; blocks on a full stderr
_PROBE = (
    PRIVILEGE_PROBE
    + """
import json, socket, sys
try:
    socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1).close()
    network = "reached the probe's loopback listener"
except OSError as error:
    network = ""
report = {"pid": os.getpid(), "uid": os.getuid(), "env": sorted(os.environ), "network": network,
          "self": privileges(status_of("self")), "setuid": setuid_run(sys.argv[3]),
          "sees_service_file": os.path.exists(sys.argv[2])}
print(json.dumps(report))
"""
)


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
    for who, seen in (("the program", report["self"]), (f"setuid {SETUID_BINARY}", report["setuid"])):
        if seen is not None and not unprivileged(seen):
            return f"{who} runs with privileges ({seen})"
    if report["sees_service_file"]:
        return "the program can read the service's own files (no private root)"
    extra = [name for name in report["env"] if name != "LC_CTYPE"]  # Python's own C-locale coercion
    if extra:
        return f"the environment is not empty ({', '.join(extra)})"
    return ""


def unprivileged(seen: dict[str, object]) -> bool:
    """Whether `privileges()` (or `setuid_run()`) saw no root, no capability and no_new_privs set; a setuid
    binary that could not even be inspected counts as unprivileged (it gained nothing we could see)."""
    if "error" in seen:
        return True
    no_capability = "0" * 16
    return (
        seen.get("euid") != 0
        and seen.get("cap_eff") == no_capability
        and seen.get("cap_bnd") == no_capability
        and seen.get("no_new_privs") == "1"
    )


@functools.cache
def probe_isolation() -> IsolationStatus:
    """Run the probe once per process (about one sandbox start) and remember the answer."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        try:
            argv = ["probe.py", str(port), os.path.realpath(__file__), SETUID_BINARY]
            result = Sandbox().run({"probe.py": _PROBE}, argv)
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
    return IsolationStatus(
        True,
        "network, PID and mount namespaces, a private read-only root, no capabilities, no_new_privs, "
        "an unprivileged uid, an empty environment",
    )


def unsafe_opt_in(variable: str, environ: Mapping[str, str] | None = None) -> bool:
    """Whether the operator set the explicit unsafe flag `variable` (a boolean as pydantic reads one)."""
    raw = (os.environ if environ is None else environ).get(variable, "")
    if not raw:
        return False
    try:
        return TypeAdapter(bool).validate_python(raw)
    except ValidationError:
        logger.warning("%s=%r is not a boolean; treating it as false", variable, raw)
        return False


def choose_sandbox(
    status: IsolationStatus, allow_unsafe: bool, limits: SandboxLimits = DEFAULT_SANDBOX_LIMITS
) -> Sandbox | None:
    """The isolated sandbox where the kernel allows it, an rlimits-only one where the operator opted in,
    else None (the caller refuses to run programs, saying `status.reason`)."""
    if status.available:
        return Sandbox(limits)
    if allow_unsafe:
        return Sandbox(limits, isolate=False)
    return None
