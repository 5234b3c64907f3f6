"""What a program, and a setuid binary it runs, hold inside the sandbox: euid, capabilities, no_new_privs.

Shipped into the sandbox as source text (standard library only) by the start-up probe (`probe.py`) and by
the tests, which append their own lines calling `privileges(status_of("self"))` or `setuid_run(path)`.
"""

from __future__ import annotations

import os
import subprocess
import time


def status_of(pid: int | str) -> dict[str, str]:
    """/proc/PID/status as a dict of its `Name:\\tvalue` lines."""
    with open(f"/proc/{pid}/status") as handle:
        return dict(line.split(":\t", 1) for line in handle.read().splitlines() if ":\t" in line)


def privileges(fields: dict[str, str]) -> dict[str, object]:
    """Effective uid, effective and bounding capability sets, and no_new_privs from a status dict."""
    return {
        "euid": int(fields["Uid"].split()[1]),
        "cap_eff": fields["CapEff"],
        "cap_bnd": fields["CapBnd"],
        "no_new_privs": fields["NoNewPrivs"],
    }


def setuid_run(path: str, deadline_s: float = 20.0) -> dict[str, object] | None:
    """Run the setuid binary `path` (as `path root`) and read its privileges while it runs.

    Its stderr is a pipe that is already full, so it blocks on its first complaint until it has been looked
    at (`su` without a password, a missing user, ...). None when `path` is not there; {"error": ...} when
    it exited before it could be inspected. `deadline_s` is only reached by a hang.
    """
    if not os.path.exists(path):
        return None
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    try:
        while True:
            os.write(write_end, b"x" * 65536)
    except BlockingIOError:
        pass
    os.set_blocking(write_end, True)
    child = subprocess.Popen(
        [path, "root"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=write_end
    )
    os.close(write_end)
    name, fields, give_up = "", {}, time.monotonic() + deadline_s
    try:
        while name != os.path.basename(path) and time.monotonic() < give_up:
            fields = status_of(child.pid)
            name = fields["Name"]
    except OSError:
        return {"error": "it exited before it could be inspected"}
    finally:
        os.close(read_end)
        child.kill()
        child.wait()
    return privileges(fields)
