"""A worker's loop: receive (item id, task name, completion, reference, fields), send back a Verdict.

The task is looked up by name in TASKS (the zygote imported every built-in and plugin before forking this
process) and run with no time limit of its own: the parent kills the whole process when the item's CPU
budget is spent, which is the only limit that holds whatever the task is doing. A memory cap turns
runaway allocations into MemoryError.
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Mapping
from multiprocessing.connection import Connection
from typing import Any

from grpo_reward.tasks import TASKS
from grpo_reward.tasks.contract import TaskTimedOut, as_task_score, score_verdict
from grpo_reward.verdict import Verdict, failed, timed_out

logger = logging.getLogger(__name__)

_MAX_ERROR_CHARS = 300


def _cap_memory(limit_bytes: int) -> None:
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, limit_bytes))
    except (ImportError, ValueError, OSError) as error:  # not on every platform
        logger.debug("could not cap worker memory: %s", error)


def run_task(name: str, completion: str, reference: str, fields: Mapping[str, Any]) -> Verdict:
    """One item graded by the task called `name`; every failure of the task becomes the item's reason."""
    try:
        function = TASKS.get_item(name, import_references=False)
        return score_verdict(as_task_score(function(completion, reference, **fields)))
    except TaskTimedOut as error:
        return timed_out(f"timeout: {error}"[:_MAX_ERROR_CHARS])
    except MemoryError:
        return failed("too large: out of memory")
    except RecursionError:
        return failed("too large: nested too deeply")
    except Exception as error:  # a task's bug must cost one item, never the worker
        message = f"task {name!r} failed: {type(error).__name__}: {error}"
        return failed(message[:_MAX_ERROR_CHARS])


def worker_main(connection: Connection, memory_limit_bytes: int) -> None:
    """Serve grading requests on `connection` until it closes or a None request arrives."""
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
        item_id, name, completion, reference, fields = request
        verdict = run_task(name, completion, reference, fields)
        try:
            connection.send((item_id, verdict))
        except (OSError, ValueError):
            return
