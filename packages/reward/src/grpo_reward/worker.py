"""A verification worker's loop: receive (task id, completion, reference, fallback), send back a Verdict.

Runs `check` with no time limit of its own: the parent kills the whole process when its budget is spent, which
is the only limit that holds whatever sympy is doing. A memory cap turns runaway allocations into MemoryError.
"""

from __future__ import annotations

import logging
import os
import signal
from multiprocessing.connection import Connection

from grpo_reward.check import check
from grpo_reward.verdict import failed

logger = logging.getLogger(__name__)


def _cap_memory(limit_bytes: int) -> None:
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, limit_bytes))
    except (ImportError, ValueError, OSError) as error:  # not on every platform
        logger.debug("could not cap worker memory: %s", error)


def worker_main(connection: Connection, memory_limit_bytes: int) -> None:
    """Serve verification requests on `connection` until it closes or a None request arrives."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    if memory_limit_bytes > 0:
        _cap_memory(memory_limit_bytes)
    connection.send(("ready", os.getpid()))
    while True:
        try:
            request = connection.recv()
        except (EOFError, OSError):
            return
        if request is None:
            return
        task_id, completion, reference, fallback_last_number = request
        try:
            verdict = check(completion, reference, fallback_last_number=fallback_last_number)
        except MemoryError:
            verdict = failed("too large: out of memory")
        except RecursionError:
            verdict = failed("too large: nested too deeply")
        except Exception as error:  # a verifier bug must cost one item, never the worker
            verdict = failed(f"internal error: {type(error).__name__}")
        try:
            connection.send((task_id, verdict))
        except (OSError, ValueError):
            return
