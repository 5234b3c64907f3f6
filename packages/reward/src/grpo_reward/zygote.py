"""A preloaded, single-threaded process that forks grading workers on request.

Importing sympy takes seconds; forking a process that has already imported it takes milliseconds. The zygote
is started once (`grpo_reward.zygote.main`), imports the verifier, every built-in task, the operator's
plugins and the installed `grpo.tasks` entry points, and forks a worker whenever a client
sends it one end of a socket pair. Unlike multiprocessing's spawn/forkserver it never re-imports the caller's
`__main__` (a script without an `if __name__ == "__main__"` guard just works), and unlike plain fork it is
safe from any thread of a multi-threaded caller (gRPC, asyncio executors). Workers are the zygote's children:
it reaps them (SIGCHLD ignored) and they die with it; it exits when its client's control socket closes.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Sequence
from multiprocessing.connection import Connection

logger = logging.getLogger(__name__)


def _die_with_parent() -> None:
    """Linux: SIGKILL this worker when the zygote exits, so no worker outlives its service."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def serve(control: socket.socket, memory_limit_bytes: int, plugins: list[str]) -> None:
    """The zygote loop: for each fd received on `control`, fork a worker that serves it."""
    from grpo_reward.check import check
    from grpo_reward.tasks.plugins import load_plugins
    from grpo_reward.worker import worker_main

    load_plugins(plugins)  # before any fork, so that every worker has every task
    check(r"so \boxed{(x+1)^2}", "x^2+2x+1")  # warm sympy's caches once, for every future worker
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    while True:
        try:
            message, fds, _, _ = socket.recv_fds(control, 16, 4)
        except OSError:
            return
        if not message:
            return
        for fd in fds:
            pid = os.fork()
            if pid == 0:
                try:
                    control.close()
                    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                    _die_with_parent()
                    worker_main(Connection(fd), memory_limit_bytes)
                finally:
                    os._exit(0)
            os.close(fd)


_BOOT = "from grpo_reward.zygote import main; main()"


class Zygote:
    """Client side: starts the zygote process and asks it for workers (thread-safe)."""

    def __init__(self, memory_limit_bytes: int, plugins: Sequence[str] = ()) -> None:
        self._memory_limit = memory_limit_bytes
        self._plugins = list(plugins)
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._control: socket.socket | None = None
        self._owner_pid = os.getpid()

    def _start(self) -> None:
        ours, theirs = socket.socketpair()
        self._process = subprocess.Popen(
            [sys.executable, "-c", _BOOT, str(theirs.fileno()), str(self._memory_limit), *self._plugins],
            pass_fds=[theirs.fileno()],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            close_fds=True,
        )
        theirs.close()
        self._control = ours
        logger.debug("started grading zygote %s", self._process.pid)

    def spawn_worker(self) -> Connection:
        """A connection to a newly forked worker; the worker sends ("ready", pid) once it is serving."""
        ours, theirs = socket.socketpair()
        with self._lock:
            if self._process is None or self._process.poll() is not None or os.getpid() != self._owner_pid:
                self._owner_pid = os.getpid()
                self._start()
            assert self._control is not None  # set by _start (internal state, not request data)
            try:
                socket.send_fds(self._control, [b"F"], [theirs.fileno()])
            except OSError:
                self._start()
                socket.send_fds(self._control, [b"F"], [theirs.fileno()])
        theirs.close()
        return Connection(ours.detach())

    def close(self) -> None:
        """Stop the zygote (its workers receive SIGKILL through their parent-death signal)."""
        with self._lock:
            if self._control is not None:
                self._control.close()
                self._control = None
            if self._process is not None:
                try:
                    self._process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self._process.kill()
                    self._process.wait()
                self._process = None


def main() -> None:
    """Entry point of the zygote process: argv = control fd, worker memory limit in bytes, plugins..."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    control = socket.socket(fileno=int(sys.argv[1]))
    serve(control, int(sys.argv[2]), sys.argv[3:])
