"""The public entry points: `Verifier` (batch, parallel, time-limited) and `verify` (one item).

Every item is graded by a task from `grpo_reward.tasks.TASKS` (default `math`) in a worker process with a
hard CPU-time limit. A task's `quick` path, when it has one (math: plain numbers, identical strings,
nothing extracted), decides cheap items in the calling thread, which keeps GSM8K-style grading cheap.
`verify` owns a short-lived one-worker Verifier when it needs one, so there is no hidden global pool to
leak, to share across forks or to close; use a `Verifier` to grade many items.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from grpo_common.registry import UnknownName

from grpo_reward.pool import DEFAULT_MEMORY_LIMIT_MB, Task, WorkerPool
from grpo_reward.tasks import TASKS
from grpo_reward.tasks.batched import BATCH_TASKS, BatchTask
from grpo_reward.tasks.contract import DEFAULT_LANE, TaskScore, Undecided, lane_of, score_verdict
from grpo_reward.tasks.math_verifier import MATH
from grpo_reward.verdict import Verdict, failed, timed_out
from grpo_reward.zygote import Zygote

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 1.0
MAX_TIMEOUT_S = 60.0
DEFAULT_TASK = "math"

_zygote_lock = threading.Lock()
_zygotes: dict[tuple[int, tuple[str, ...]], Zygote] = {}


def shared_zygote(memory_limit_mb: int = DEFAULT_MEMORY_LIMIT_MB, plugins: Sequence[str] = ()) -> Zygote:
    """The process-wide worker factory for these settings, made on first use (like a forkserver).

    Sharing it means only the first Verifier of a process pays for importing sympy (and the plugins);
    later Verifiers, and the workers that replace killed ones, are forks. It restarts itself if it died or
    after an os.fork.
    """
    key = (memory_limit_mb, tuple(plugins))
    with _zygote_lock:
        if key not in _zygotes:
            _zygotes[key] = Zygote(memory_limit_mb * 1024 * 1024, plugins)
        return _zygotes[key]


@dataclass(frozen=True)
class Item:
    """One thing to grade: a completion, its reference, the task's name, the row's fields and the prompt
    (read by reward models and judges only; "" when unknown)."""

    completion: str
    reference: str
    task: str = DEFAULT_TASK
    fields: Mapping[str, Any] = field(default_factory=dict)
    prompt: str = ""


def _done(verdict: Verdict) -> Future[Verdict]:
    future: Future[Verdict] = Future()
    future.set_result(verdict)
    return future


def _on_timeout(pending: Undecided, reason: str) -> Verdict:
    return timed_out(reason, pending.extracted)


class Verifier:
    """Grade items in parallel across `workers` processes, each item under a hard CPU-time limit.

    Use as a context manager (or call `close`). Thread-safe; `averify_items` is the asyncio form.
    `plugins` are imported by the workers' zygote before it forks (see `grpo_reward.tasks.plugins`);
    the caller imports them itself too (`load_plugins`) to name their tasks. Parsed math references are
    cached per worker, so repeated references (a GRPO group) parse once per worker.

    Each task's lane (`grpo_reward.tasks.contract.lane_of`: `code` has its own; `task_lanes` maps a task
    name to another) gets `workers` processes unless `lane_workers` names another number, so a slow task's
    burst never queues cheap items.
    """

    def __init__(
        self,
        workers: int | None = None,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        fallback_last_number: bool = False,
        zygote: Zygote | None = None,
        plugins: Sequence[str] = (),
        memory_limit_mb: int = DEFAULT_MEMORY_LIMIT_MB,
        lane_workers: Mapping[str, int] | None = None,
        task_lanes: Mapping[str, str] | None = None,
    ) -> None:
        self.timeout_s = _checked_timeout(timeout_s)
        self.fallback_last_number = fallback_last_number
        self.workers = workers or os.cpu_count() or 1
        self._task_lanes = dict(task_lanes or {})
        self._pool = WorkerPool(
            self.workers,
            zygote=zygote or shared_zygote(memory_limit_mb, plugins),
            first_lane=DEFAULT_LANE,
            lane_workers=lane_workers,
        )

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

    def lanes(self) -> dict[str, int]:
        """Worker processes started per lane (a lane starts with its first item)."""
        return self._pool.lanes()

    def submit_item(
        self, item: Item, *, timeout_s: float | None = None, fallback_last_number: bool | None = None
    ) -> Future[Verdict]:
        """Start grading one item; the future resolves to its Verdict (never to an exception).

        The task is found among the registered and loaded tasks only: a name is never imported here.
        """
        if not isinstance(item.completion, str) or not isinstance(item.reference, str):
            return _done(failed("completion and reference must be strings"))
        if BATCH_TASKS.get(item.task) is not None:
            return _done(failed(f"task {item.task!r} is scored a batch at a time: use averify_items"))
        try:
            function = TASKS.get_item(item.task, import_references=False)
        except UnknownName as error:
            return _done(failed(str(error)))
        limit = self.timeout_s if timeout_s is None else _checked_timeout(timeout_s)
        fields = dict(item.fields)
        if self.fallback_last_number if fallback_last_number is None else fallback_last_number:
            fields.setdefault("fallback_last_number", True)
        pending = Undecided()
        quick = getattr(function, "quick", None)
        if quick is not None:
            try:
                outcome = quick(item.completion, item.reference, **fields)
                if isinstance(outcome, TaskScore):
                    return _done(score_verdict(outcome))
                pending = outcome
            except Exception as error:  # defensive: the quick path must never take a caller down
                logger.exception("quick path of task %r failed", item.task)
                return _done(failed(f"internal error: {type(error).__name__}"))
        on_timeout = partial(_on_timeout, pending)
        lane = self._task_lanes.get(item.task) or lane_of(function)  # the operator's choice, else the task's
        task = Task(item.task, item.completion, item.reference, fields, limit, on_timeout, lane)
        return self._pool.submit(task)

    def submit(
        self,
        completion: str,
        reference: str,
        *,
        timeout_s: float | None = None,
        fallback_last_number: bool | None = None,
    ) -> Future[Verdict]:
        """`submit_item` for the default task (math)."""
        return self.submit_item(
            Item(completion, reference), timeout_s=timeout_s, fallback_last_number=fallback_last_number
        )

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
        pairs = [Item(completion, reference) for completion, reference in items]
        return await self.averify_items(pairs, timeout_s=timeout_s, fallback_last_number=fallback_last_number)

    async def averify_items(
        self,
        items: Sequence[Item],
        *,
        timeout_s: float | None = None,
        fallback_last_number: bool | None = None,
    ) -> list[Verdict]:
        """Grade items of any tasks from asyncio; verdicts in input order, the event loop never blocked.

        Items of a BatchTask (a reward model, a judge) go to it in one call per task, beside the pool.
        """
        batches: dict[str, tuple[BatchTask, list[int]]] = {}
        pooled: list[int] = []
        for index, item in enumerate(items):
            batch_task = BATCH_TASKS.get(item.task)
            if batch_task is None:
                pooled.append(index)
            else:
                batches.setdefault(item.task, (batch_task, []))[1].append(index)
        loop = asyncio.get_running_loop()
        submit = partial(self._submit_all, [items[i] for i in pooled], timeout_s, fallback_last_number)
        futures = await loop.run_in_executor(None, submit)  # quick paths of long texts stay off the loop
        results = await asyncio.gather(
            asyncio.gather(*(asyncio.wrap_future(future) for future in futures)),
            *(task.score_batch([items[i] for i in indices]) for task, indices in batches.values()),
        )
        verdicts: list[Verdict | None] = [None] * len(items)
        for indices, scored in zip([pooled, *(i for _, i in batches.values())], results, strict=True):
            for index, verdict in zip(indices, scored, strict=True):
                verdicts[index] = verdict
        return [v if v is not None else failed("internal error: not scored") for v in verdicts]

    def _submit_all(
        self, items: Sequence[Item], timeout_s: float | None, fallback_last_number: bool | None
    ) -> list[Future[Verdict]]:
        return [
            self.submit_item(item, timeout_s=timeout_s, fallback_last_number=fallback_last_number)
            for item in items
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
        quick = MATH.quick(completion, reference)
        if isinstance(quick, TaskScore):
            return score_verdict(quick)
        with Verifier(workers=1, timeout_s=timeout_s) as verifier:
            return verifier.verify(completion, reference)
    except Exception as error:
        logger.exception("verify failed")
        return failed(f"internal error: {type(error).__name__}: {error}")


def score_batch(
    completions: Sequence[str],
    references: Sequence[str],
    *,
    task: str = DEFAULT_TASK,
    fields: Sequence[Mapping[str, Any]] | None = None,
    verifier: Verifier | None = None,
    workers: int | None = None,
) -> list[Verdict]:
    """Verdicts of completions[i] against references[i], in order: for evaluation harnesses.

    Grades with `verifier` (keep one across calls: its workers cache parsed references) or with one made
    for this call (`workers` processes). `fields[i]` are row i's fields for tasks that read them.
    """
    if len(completions) != len(references) or (fields is not None and len(fields) != len(completions)):
        raise ValueError(
            f"score_batch needs one reference (and fields) per completion: {len(completions)} completions, "
            f"{len(references)} references, {'no' if fields is None else len(fields)} fields"
        )
    rows = fields if fields is not None else [{}] * len(completions)
    items = [Item(c, r, task, f) for c, r, f in zip(completions, references, rows, strict=True)]
    if verifier is not None:
        return [future.result() for future in [verifier.submit_item(item) for item in items]]
    with Verifier(workers=workers) as owned:
        return [future.result() for future in [owned.submit_item(item) for item in items]]
