"""The public entry points: `Verifier` (batch, parallel, time-limited) and `verify` (one item).

Every verification that needs sympy runs in a worker process with a hard time limit; answers that cannot
blow up (plain numbers, identical strings, nothing extracted) are decided in the calling thread, which keeps
GSM8K-style grading cheap. `verify` owns a short-lived one-worker Verifier when it needs one, so there is no
hidden global pool to leak, to share across forks or to close; use a `Verifier` to grade many items.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Iterable, Sequence
from concurrent.futures import Future
from functools import partial

from grpo_reward.check import quick_check, timeout_verdict
from grpo_reward.pool import Task, WorkerPool
from grpo_reward.verdict import Verdict, failed
from grpo_reward.zygote import Zygote

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 1.0
MAX_TIMEOUT_S = 60.0
DEFAULT_MEMORY_LIMIT_MB = 3072

_zygote_lock = threading.Lock()
_zygote: Zygote | None = None


def shared_zygote() -> Zygote:
    """The process-wide worker factory, made on first use (like multiprocessing's forkserver).

    Sharing it means only the first Verifier of a process pays for importing sympy; later Verifiers, and the
    workers that replace killed ones, are forks. It restarts itself if it died or after an os.fork.
    """
    global _zygote
    with _zygote_lock:
        if _zygote is None:
            _zygote = Zygote(DEFAULT_MEMORY_LIMIT_MB * 1024 * 1024)
        return _zygote


def _done(verdict: Verdict) -> Future[Verdict]:
    future: Future[Verdict] = Future()
    future.set_result(verdict)
    return future


class Verifier:
    """Verify answers in parallel across `workers` processes, each item under a hard time limit.

    Use as a context manager (or call `close`). Thread-safe; `averify_many` is the asyncio form.
    Parsed references are cached per worker, so repeated references (a GRPO group) parse once per worker.
    """

    def __init__(
        self,
        workers: int | None = None,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        fallback_last_number: bool = False,
        zygote: Zygote | None = None,
    ) -> None:
        self.timeout_s = _checked_timeout(timeout_s)
        self.fallback_last_number = fallback_last_number
        self.workers = workers or os.cpu_count() or 1
        self._pool = WorkerPool(self.workers, zygote=zygote or shared_zygote())

    def __enter__(self) -> Verifier:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the worker processes."""
        self._pool.close()

    def wait_ready(self, timeout_s: float = 30.0) -> bool:
        """Block until all workers have started (so the first items do not wait for process start-up)."""
        return self._pool.wait_ready(timeout_s)

    def worker_pids(self) -> list[int]:
        """Process ids of the current worker processes."""
        return self._pool.worker_pids()

    def submit(
        self,
        completion: str,
        reference: str,
        *,
        timeout_s: float | None = None,
        fallback_last_number: bool | None = None,
    ) -> Future[Verdict]:
        """Start verifying one item; the future resolves to its Verdict (never to an exception)."""
        if not isinstance(completion, str) or not isinstance(reference, str):
            return _done(failed("completion and reference must be strings"))
        limit = self.timeout_s if timeout_s is None else _checked_timeout(timeout_s)
        fallback = self.fallback_last_number if fallback_last_number is None else fallback_last_number
        try:
            quick = quick_check(completion, reference, fallback_last_number=fallback)
        except Exception as error:  # defensive: the quick path must never take a caller down
            logger.exception("quick check failed")
            return _done(failed(f"internal error: {type(error).__name__}"))
        if isinstance(quick, Verdict):
            return _done(quick)
        task = Task(completion, reference, fallback, limit, on_timeout=partial(timeout_verdict, quick))
        return self._pool.submit(task)

    def verify(self, completion: str, reference: str, *, timeout_s: float | None = None) -> Verdict:
        """Verify one item and wait for its verdict."""
        return self.submit(completion, reference, timeout_s=timeout_s).result()

    def verify_many(
        self, items: Iterable[tuple[str, str]], *, timeout_s: float | None = None
    ) -> list[Verdict]:
        """Verify (completion, reference) pairs in parallel; verdicts come back in input order."""
        futures = [self.submit(completion, reference, timeout_s=timeout_s) for completion, reference in items]
        return [future.result() for future in futures]

    async def averify_many(
        self,
        items: Sequence[tuple[str, str]],
        *,
        timeout_s: float | None = None,
        fallback_last_number: bool | None = None,
    ) -> list[Verdict]:
        """`verify_many` for asyncio: never blocks the event loop on a worker."""
        loop = asyncio.get_running_loop()
        submit = partial(self._submit_all, items, timeout_s, fallback_last_number)
        futures = await loop.run_in_executor(
            None, submit
        )  # extraction of long completions stays off the loop
        return list(await asyncio.gather(*(asyncio.wrap_future(future) for future in futures)))

    def _submit_all(
        self, items: Sequence[tuple[str, str]], timeout_s: float | None, fallback_last_number: bool | None
    ) -> list[Future[Verdict]]:
        return [
            self.submit(completion, reference, timeout_s=timeout_s, fallback_last_number=fallback_last_number)
            for completion, reference in items
        ]


def _checked_timeout(timeout_s: float) -> float:
    if not (0 < timeout_s <= MAX_TIMEOUT_S):
        raise ValueError(f"timeout_s must be in (0, {MAX_TIMEOUT_S}], got {timeout_s}")
    return float(timeout_s)


def verify(completion: str, reference: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> Verdict:
    """Whether `completion`'s final answer equals `reference`. Never raises; hard time limit `timeout_s`.

    Plain-number answers are decided in this thread; anything that needs sympy runs in a one-worker
    Verifier created for this call (a fork of a preloaded server: milliseconds). Grade many items with a
    `Verifier` instead, which keeps its workers and their reference cache.
    """
    try:
        if not isinstance(completion, str) or not isinstance(reference, str):
            return failed("completion and reference must be strings")
        if not (0 < timeout_s <= MAX_TIMEOUT_S):
            return failed(f"timeout_s must be in (0, {MAX_TIMEOUT_S}], got {timeout_s}")
        quick = quick_check(completion, reference)
        if isinstance(quick, Verdict):
            return quick
        with Verifier(workers=1, timeout_s=timeout_s) as verifier:
            return verifier.verify(completion, reference)
    except Exception as error:
        logger.exception("verify failed")
        return failed(f"internal error: {type(error).__name__}: {error}")
