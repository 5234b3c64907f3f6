"""A small pool of killable grading worker processes with a hard per-item time limit in CPU seconds.

One dispatcher thread owns the workers: it hands each queued item to an idle worker, waits on the workers'
pipes until the earliest moment an item could have spent its budget, and kills (SIGKILL) and replaces any
worker whose item has. The budget is CPU time of the worker (read from /proc/PID/stat), so a loaded machine
that gives the worker less than a full core does not turn a correct answer into a timeout; a wall-clock
backstop of `wall_backstop_s(limit)` still kills items that sleep or block. A worker that dies on its own
is replaced too; its item, like a timed-out one, comes back with `timed_out` set. Callers only ever see
`concurrent.futures.Future` objects, so the pool works from any thread and from asyncio
(`asyncio.wrap_future`); nothing relies on signals in the calling thread.

Workers are grouped in lanes, one queue per lane (`Task.lane`, chosen by the task: see
`grpo_reward.tasks.contract.lane_of`). A lane's workers take only its own items, so a cheap task (math)
waits behind other cheap items, never behind a burst of slow ones (`code` programs in a sandbox): with one
FIFO queue, 32 code items sent at once held a math item for seconds. A lane's workers start with its
first item, so a service that never grades code never starts code workers.
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
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any

from grpo_reward.verdict import Verdict
from grpo_reward.zygote import Zygote

logger = logging.getLogger(__name__)

DEFAULT_MEMORY_LIMIT_MB = 3072  # address-space cap of each worker (RLIMIT_AS)
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_MIN_POLL_S = 0.01


def wall_backstop_s(limit_s: float) -> float:
    """The wall-clock limit of an item with CPU limit `limit_s`: 10 x limit + 2 s (for sleeping tasks)."""
    return 10 * limit_s + 2


def process_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of process `pid` and of its children it has waited for (Linux /proc),
    None where that cannot be read. A child still running (a sandboxed program) is not counted until it
    is reaped: a task that runs children must limit them itself; the wall-clock backstop still holds."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
        ticks = sum(int(value) for value in fields[11:15])  # utime, stime, cutime, cstime (fields 14-17)
        return ticks / _CLOCK_TICKS
    except (OSError, IndexError, ValueError):
        return None


@dataclass
class Task:
    """One queued item (a task by name and its inputs) and the future its verdict goes to.

    `on_timeout(reason)` makes the item's verdict when it runs out of time or its worker dies; `lane` is
    the group of workers that may take it.
    """

    name: str
    completion: str
    reference: str
    fields: dict[str, Any]
    timeout_s: float
    on_timeout: Callable[[str], Verdict]
    lane: str
    future: Future[Verdict] = field(default_factory=Future)


@dataclass
class _Worker:
    connection: Connection
    lane: str
    pid: int | None = None
    ready: bool = False
    task: Task | None = None
    task_id: int = -1
    started: float = 0.0
    cpu_at_start: float = 0.0
    check_at: float = 0.0


class WorkerPool:
    """Processes verifying queued tasks, `workers` per lane unless `lane_workers` names another number;
    see the module docstring. Lane `first_lane` starts now, the others with their first task."""

    def __init__(
        self, workers: int, *, zygote: Zygote, first_lane: str, lane_workers: Mapping[str, int] | None = None
    ) -> None:
        sizes = {first_lane: workers, **(lane_workers or {})}
        for lane, size in sizes.items():
            if size < 1:
                raise ValueError(f"lane {lane!r} needs at least 1 worker, got {size}")
        self._zygote = zygote
        self._sizes = sizes
        self._default_size = workers
        self._queues: dict[str, deque[Task]] = {}
        self._lock = threading.Lock()
        self._closing = False
        self._ids = itertools.count()
        self._wake_reader, self._wake_writer = socket.socketpair()
        self._wake_reader.setblocking(False)
        self._workers: list[_Worker] = []
        self._open_lane(first_lane)
        self.replaced = 0
        self._thread = threading.Thread(target=self._run, name="grpo-reward-dispatcher", daemon=True)
        self._thread.start()

    # -- public ---------------------------------------------------------------------------------------------
    def submit(self, task: Task) -> Future[Verdict]:
        """Queue a task; its future resolves to the worker's verdict or to task.on_timeout(elapsed)."""
        with self._lock:
            if self._closing:
                raise RuntimeError("the verifier is closed; create a new Verifier")
            self._queues.setdefault(task.lane, deque()).append(task)
        self._wake()
        return task.future

    def lanes(self) -> dict[str, int]:
        """Workers started per lane (lanes start with their first task)."""
        counts: dict[str, int] = {}
        for worker in list(self._workers):
            counts[worker.lane] = counts.get(worker.lane, 0) + 1
        return counts

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

    def _start_worker(self, lane: str) -> _Worker:
        return _Worker(connection=self._zygote.spawn_worker(), lane=lane)

    def _open_lane(self, lane: str) -> None:
        """Start the workers of a lane that has none yet (dispatcher thread, or __init__ before it runs)."""
        size = self._sizes.get(lane, self._default_size)
        self._workers += [self._start_worker(lane) for _ in range(size)]
        with self._lock:
            self._queues.setdefault(lane, deque())

    @staticmethod
    def _kill(worker: _Worker) -> None:
        if worker.pid is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(worker.pid, signal.SIGKILL)

    def _replace(self, index: int, reason: str | None) -> None:
        """Kill worker `index`, start its successor, then resolve its task (so callers see the new worker)."""
        worker = self._workers[index]
        try:
            self._kill(worker)
            worker.connection.close()
            self.replaced += 1
            if not self._closing:
                self._workers[index] = self._start_worker(worker.lane)
        finally:
            if worker.task is not None and reason is not None and not worker.task.future.done():
                worker.task.future.set_result(worker.task.on_timeout(reason))

    def _assign(self) -> None:
        with self._lock:
            waiting = {lane for lane, queue in self._queues.items() if queue}
        for lane in waiting - {worker.lane for worker in self._workers}:
            self._open_lane(lane)
        for worker in self._workers:
            if not worker.ready or worker.task is not None:
                continue
            while True:
                with self._lock:
                    queue = self._queues[worker.lane]
                    task = queue.popleft() if queue else None
                if task is None:
                    break
                if task.future.set_running_or_notify_cancel():
                    break
            if task is None:
                continue
            worker.task_id = next(self._ids)
            worker.task = task
            worker.started = time.monotonic()
            worker.cpu_at_start = self._cpu_s(worker)
            worker.check_at = worker.started + task.timeout_s
            try:
                request = (worker.task_id, task.name, task.completion, task.reference, task.fields)
                worker.connection.send(request)
            except (OSError, ValueError):
                self._replace(self._workers.index(worker), "worker died before grading; replaced")

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
            logger.warning("grading worker %s died; replacing it", worker.pid)
            self._replace(index, "worker died while grading (crashed or was killed); replaced")
            return
        if message[0] == "ready":
            worker.pid = message[1]
            worker.ready = True
            return
        task_id, verdict = message
        if worker.task is not None and task_id == worker.task_id:
            worker.task.future.set_result(verdict)
            worker.task = None

    @staticmethod
    def _cpu_s(worker: _Worker) -> float:
        """The worker's CPU seconds so far; its wall-clock age where /proc cannot be read."""
        measured = process_cpu_s(worker.pid) if worker.pid is not None else None
        return time.monotonic() - worker.started if measured is None else measured

    def _expire(self) -> None:
        """Kill workers whose item spent its CPU budget or reached the wall-clock backstop."""
        now = time.monotonic()
        for index, worker in enumerate(self._workers):
            task = worker.task
            if task is None or now < worker.check_at:
                continue
            wall_s = now - worker.started
            backstop_s = wall_backstop_s(task.timeout_s)
            if wall_s >= backstop_s:
                logger.info("item ran %.1f s wall-clock; killing worker %s", wall_s, worker.pid)
                self._replace(index, f"timeout: no result after {backstop_s:g} s wall-clock (blocked)")
                continue
            cpu_s = self._cpu_s(worker) - worker.cpu_at_start
            if cpu_s >= task.timeout_s:
                logger.info("item used %.2f s CPU; killing worker %s", cpu_s, worker.pid)
                self._replace(index, f"timeout after {task.timeout_s:g} s CPU (too large or too hard)")
                continue
            # CPU time grows at most as fast as wall time (one thread): nothing can expire before this.
            next_check = now + max(_MIN_POLL_S, task.timeout_s - cpu_s)
            worker.check_at = min(next_check, worker.started + backstop_s)

    def _run(self) -> None:
        try:
            while not self._closing:
                self._assign()
                busy = [worker.check_at for worker in self._workers if worker.task is not None]
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
            logger.exception("grading dispatcher failed")
        finally:
            self._shutdown()

    def _shutdown(self) -> None:
        with self._lock:
            self._closing = True
            pending = [task for queue in self._queues.values() for task in queue]
            self._queues.clear()
        for task in pending:
            if task.future.set_running_or_notify_cancel():
                task.future.set_result(Verdict(False, 0.0, None, "the pool closed before this item ran"))
        for worker in self._workers:
            if worker.task is not None and not worker.task.future.done():
                worker.task.future.set_result(
                    Verdict(False, 0.0, None, "the pool closed before this item finished")
                )
            with contextlib.suppress(OSError, ValueError):
                worker.connection.send(None)
        for worker in self._workers:
            if worker.task is not None or not worker.ready:
                self._kill(worker)
            worker.connection.close()
