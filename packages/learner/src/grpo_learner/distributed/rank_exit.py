"""How a learner rank's process ends: a normal exit's duties, then no interpreter finalization.

Standard library only, so a caller that never trained (and a test) need not import torch.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from typing import NoReturn


def exit_rank_process(status: int) -> NoReturn:
    """End a learner rank's process without the interpreter's finalization.

    `destroy_process_group` drops c10d's own references, but FSDP's modules still hold the
    process group (through their device mesh) until the interpreter tears itself down, and
    that teardown destroys C++ objects (gloo's worker and I/O threads, the store client) in no
    order Python controls. Twice in CI a rank that had finished and checkpointed died at its very
    end with SIGABRT ("terminate called without an active exception": a C++ thread destroyed
    while still running), which turned a complete run into a failed one; it has not recurred in
    dozens of local reruns, so that teardown is the likely place, not a proven one (the log line
    "rank N left the process group" now tells which side of leaving a rank dies on). Here every
    file is written and closed, so
    the process does what a normal exit does while everything is still alive (wait for its
    threads, run atexit handlers, among them logging's flush) and then leaves with `os._exit`.
    """
    try:
        threading._shutdown()  # type: ignore[attr-defined]  # what the interpreter does at exit
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:  # an exit handler failed: the process still ends, and says it failed
        status = status or 1
    os._exit(status)
