"""Terms the operator configured when the service started, scored a whole batch at a time.

A reward model is worth running on many items per forward pass, and a judge on many requests at
once, so they do not fit the worker pool's one-item-per-process contract. They are `BatchTask`s: the
Verifier hands each one every item of a request that names it, in one call, and waits for it off the
event loop. They are named by the operator (`grpo-reward serve --reward-model NAME=PATH`,
`--judge NAME=URL`) and live in `BATCH_TASKS` for as long as the service runs; a request can name
one (as its task or as a component) but never create one, and an unknown name is refused like any
unknown task.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

from grpo_reward.verdict import Verdict

if TYPE_CHECKING:
    from grpo_reward.verifier import Item


class BatchTask(ABC):
    """A reward term scored a batch at a time (a reward model, an LLM judge).

    `score_batch` returns one Verdict per item, in order, and never raises for an item's sake: an item
    it could not score is a verdict with `timed_out` set (no information about the answer) and the
    reason, so a trainer drops it instead of learning from a made-up 0.
    """

    name: str

    @abstractmethod
    async def score_batch(self, items: Sequence[Item]) -> list[Verdict]: ...

    def close(self) -> None:  # noqa: B027 - optional: a task without resources has nothing to release
        """Release processes and connections."""


class BatchTasks:
    """The live BatchTasks by name; `serving` adds them for the life of a service and closes them after."""

    def __init__(self) -> None:
        self._tasks: dict[str, BatchTask] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> BatchTask | None:
        with self._lock:
            return self._tasks.get(name)

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._tasks)

    @contextmanager
    def serving(self, tasks: Sequence[BatchTask]) -> Iterator[None]:
        """Make `tasks` known by name until the block ends; a name already live is a config error."""
        with self._lock:
            taken = [task.name for task in tasks if task.name in self._tasks]
            if taken:
                raise ValueError(f"reward terms {taken} are already served by this process")
            self._tasks.update({task.name: task for task in tasks})
        try:
            yield
        finally:
            with self._lock:
                for task in tasks:
                    self._tasks.pop(task.name, None)
            for task in tasks:
                task.close()


BATCH_TASKS = BatchTasks()


def check_task_name(name: str) -> None:
    """Nothing when `name` is a live BatchTask or a known task; UnknownName (a ValueError) otherwise.

    Never imports anything: names come from requests.
    """
    if BATCH_TASKS.get(name) is not None:
        return
    from grpo_common.registry import UnknownName

    from grpo_reward.tasks.contract import TASKS

    try:
        TASKS.get_item(name, import_references=False)
    except UnknownName as error:
        live = BATCH_TASKS.names()
        raise UnknownName(f"{error}; reward models and judges of this server: {live or 'none'}") from None
