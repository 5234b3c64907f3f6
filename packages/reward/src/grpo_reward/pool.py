"""A small pool of killable verification worker processes with a hard per-item time limit.

One dispatcher thread owns the workers: it hands each queued item to an idle worker, waits on the workers'
pipes with a timeout equal to the nearest deadline, and kills (SIGKILL) and replaces any worker whose item
runs past its budget. A worker that dies on its own is replaced too. Callers only ever see
`concurrent.futures.Future` objects, so the pool works from any thread and from asyncio
(`asyncio.wrap_future`); nothing relies on signals in the calling thread.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import signal
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any

from grpo_reward.verdict import Verdict
from grpo_reward.zygote import Zygote

logger = logging.getLogger(__name__)


@dataclass
class Task:
    """One queued verification and the future its verdict goes to."""

    completion: str
    reference: str
    fallback_last_number: bool
    timeout_s: float
    on_timeout: Callable[[float], Verdict]
    future: Future[Verdict] = field(default_factory=Future)


@dataclass
class _Worker:
    connection: Connection
    pid: int | None = None
    ready: bool = False
    task: Task | None = None
    task_id: int = -1
    deadline: float = 0.0


class WorkerPool:
    """`workers` processes verifying queued tasks; see the module docstring."""

    def __init__(self, workers: int, *, zygote: Zygote) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self._zygote = zygote
        self._queue: deque[Task] = deque()
        self._lock = threading.Lock()
        self._closing = False
        self._ids = itertools.count()
        self._wake_reader, self._wake_writer = socket.socketpair()
        self._wake_reader.setblocking(False)
        self._workers = [self._start_worker() for _ in range(workers)]
        self.replaced = 0
        self._thread = threading.Thread(target=self._run, name="grpo-reward-dispatcher", daemon=True)
        self._thread.start()

    # -- public ---------------------------------------------------------------------------------------------
    def submit(self, task: Task) -> Future[Verdict]:
        """Queue a task; its future resolves to the worker's verdict or to task.on_timeout(elapsed)."""
        with self._lock:
            if self._closing:
                raise RuntimeError("the verifier is closed; create a new Verifier")
            self._queue.append(task)
        self._wake()
        return task.future

    def worker_pids(self) -> list[int]:
        """Process ids of the current workers (for monitoring, and for tests that kill one)."""
        return [worker.pid for worker in self._workers if worker.pid is not None]

    def wait_ready(self, timeout_s: float = 30.0) -> bool:
        """Block until every worker has started (useful before timing anything)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if all(worker.ready for worker in self._workers):
                return True
            time.sleep(0.01)
        return False

    def close(self) -> None:
        """Stop the workers; queued tasks that never started resolve with a "verifier closed" verdict."""
        with self._lock:
            if self._closing:
                return
            self._closing = True
        self._wake()
        self._thread.join(timeout=10)
        self._wake_reader.close()
        self._wake_writer.close()

    # -- dispatcher thread ----------------------------------------------------------------------------------
    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_writer.send(b"x")

    def _start_worker(self) -> _Worker:
        return _Worker(connection=self._zygote.spawn_worker())

    @staticmethod
    def _kill(worker: _Worker) -> None:
        if worker.pid is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(worker.pid, signal.SIGKILL)

    def _replace(self, index: int, verdict: Verdict | None) -> None:
        """Kill worker `index`, start its successor, then resolve its task (so callers see the new worker)."""
        worker = self._workers[index]
        try:
            self._kill(worker)
            worker.connection.close()
            self.replaced += 1
            if not self._closing:
                self._workers[index] = self._start_worker()
        finally:
            if worker.task is not None and verdict is not None and not worker.task.future.done():
                worker.task.future.set_result(verdict)

    def _assign(self) -> None:
        for worker in self._workers:
            if not worker.ready or worker.task is not None:
                continue
            while True:
                with self._lock:
                    task = self._queue.popleft() if self._queue else None
                if task is None:
                    return
                if task.future.set_running_or_notify_cancel():
                    break
            worker.task_id = next(self._ids)
            worker.task = task
            worker.deadline = time.monotonic() + task.timeout_s
            try:
                worker.connection.send(
                    (worker.task_id, task.completion, task.reference, task.fallback_last_number)
                )
            except (OSError, ValueError):
                self._replace(self._workers.index(worker), Verdict(False, 0.0, None, "worker died; replaced"))

    def _drain_wake(self) -> None:
        try:
            while self._wake_reader.recv(4096):
                pass
        except (BlockingIOError, OSError):
            pass

    def _receive(self, index: int) -> None:
        worker = self._workers[index]
        try:
            message = worker.connection.recv()
        except (EOFError, OSError):
            logger.warning("verification worker %s died; replacing it", worker.pid)
            self._replace(index, Verdict(False, 0.0, None, "worker died while verifying; replaced"))
            return
        if message[0] == "ready":
            worker.pid = message[1]
            worker.ready = True
            return
        task_id, verdict = message
        if worker.task is not None and task_id == worker.task_id:
            worker.task.future.set_result(verdict)
            worker.task = None

    def _expire(self) -> None:
        now = time.monotonic()
        for index, worker in enumerate(self._workers):
            if worker.task is not None and now >= worker.deadline:
                task = worker.task
                logger.info("verification exceeded %.2f s; killing worker %s", task.timeout_s, worker.pid)
                self._replace(index, task.on_timeout(task.timeout_s))

    def _run(self) -> None:
        try:
            while not self._closing:
                self._assign()
                busy = [worker.deadline for worker in self._workers if worker.task is not None]
                timeout = max(0.0, min(busy) - time.monotonic()) if busy else None
                waitables: list[Any] = [self._wake_reader]
                waitables += [worker.connection for worker in self._workers]
                ready = wait(waitables, timeout)
                if self._wake_reader in ready:
                    self._drain_wake()
                for index in range(len(self._workers)):
                    if self._workers[index].connection in ready:
                        self._receive(index)
                self._expire()
        except Exception:  # never leave callers waiting forever on a dead dispatcher
            logger.exception("verification dispatcher failed")
        finally:
            self._shutdown()

    def _shutdown(self) -> None:
        with self._lock:
            self._closing = True
            pending = list(self._queue)
            self._queue.clear()
        for task in pending:
            if task.future.set_running_or_notify_cancel():
                task.future.set_result(Verdict(False, 0.0, None, "verifier closed before this item ran"))
        for worker in self._workers:
            if worker.task is not None and not worker.task.future.done():
                worker.task.future.set_result(
                    Verdict(False, 0.0, None, "verifier closed before this item finished")
                )
            with contextlib.suppress(OSError, ValueError):
                worker.connection.send(None)
        for worker in self._workers:
            if worker.task is not None or not worker.ready:
                self._kill(worker)
            worker.connection.close()
