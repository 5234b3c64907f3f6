"""A service-wide bound on concurrent sandboxes: N lock files, one held per running sandbox.

A service (the reward service, whose sandboxes run in forked worker processes; the rollout service, whose
sandboxes run in episode threads) holds `service_slots_installed(config.sandbox)` while it serves. That
makes a private directory of `count` lock files and names it in SLOTS_ENV, which every process it starts
later inherits (the reward workers' zygote included). `Sandbox.run` then holds an exclusive `flock` on one
free file for the whole run and waits, polling, while all are taken. A flock belongs to one open file, so it
bounds threads and processes alike, and the kernel releases it when its holder dies: a killed worker never
leaks a slot. Without SLOTS_ENV (a library user, a test) runs are not bounded.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import random
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from pydantic import Field

from grpo_common.config import ConfigSection

logger = logging.getLogger(__name__)

SLOTS_ENV = "GRPO_SANDBOX_SLOTS"
POLL_S = 0.005
"""How often a waiting run looks for a free slot; small next to a sandbox's ~50 ms start."""


class SandboxSlotsConfig(ConfigSection):
    """The `sandbox` section of a service's config (the reward and the rollout service)."""

    max_concurrent: int | None = Field(
        None,
        ge=1,
        description="sandboxed programs running at once in this service; the rest wait "
        "(default: one per core, as they are mostly CPU-bound)",
    )

    def count(self) -> int:
        return self.max_concurrent or max(1, os.cpu_count() or 1)


class SandboxSlots:
    """`count` lock files in `directory`; `hold()` takes one for the duration of a `with` block."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.paths = sorted(directory.glob("slot-*"))
        if not self.paths:
            raise ValueError(f"{directory} holds no sandbox slot files")

    @classmethod
    def create(cls, count: int) -> SandboxSlots:
        if count < 1:
            raise ValueError(f"the number of concurrent sandboxes must be at least 1, got {count}")
        directory = Path(tempfile.mkdtemp(prefix="grpo-sandbox-slots-"))
        for number in range(count):
            (directory / f"slot-{number}").touch()
        return cls(directory)

    @property
    def count(self) -> int:
        return len(self.paths)

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        """Wait for a free slot and hold it until the block ends (or this process dies)."""
        descriptor = self._take()
        try:
            yield
        finally:
            os.close(descriptor)  # closing the only descriptor of that open file releases the flock

    def _take(self) -> int:
        waited = False
        while True:
            start = random.randrange(self.count)  # spread the probes over the files
            for offset in range(self.count):
                path = self.paths[(start + offset) % self.count]
                descriptor = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
                try:
                    fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(descriptor)
                    continue
                return descriptor
            if not waited:
                logger.debug("all %d sandbox slots are taken; waiting", self.count)
                waited = True
            time.sleep(POLL_S)

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


@contextlib.contextmanager
def service_slots_installed(config: SandboxSlotsConfig) -> Iterator[SandboxSlots]:
    """For a service's lifetime: make the slots and name them in this process's environment, so this
    process and every process it starts from now on (before the block ends) share the bound."""
    slots = SandboxSlots.create(config.count())
    previous = os.environ.get(SLOTS_ENV)
    os.environ[SLOTS_ENV] = str(slots.directory)
    logger.info("at most %d sandboxed programs run at once (the rest wait)", slots.count)
    try:
        yield slots
    finally:
        if previous is None:
            os.environ.pop(SLOTS_ENV, None)
        else:
            os.environ[SLOTS_ENV] = previous
        slots.remove()


def service_slots() -> SandboxSlots | None:
    """The slots this process's service installed (SLOTS_ENV), or None when there are none."""
    directory = os.environ.get(SLOTS_ENV, "")
    if not directory:
        return None
    cached = _opened.get(directory)
    if cached is None:
        try:
            cached = _opened[directory] = SandboxSlots(Path(directory))
        except ValueError as error:
            logger.warning("%s=%s is unusable (%s); sandboxes are not bounded", SLOTS_ENV, directory, error)
            return None
    return cached


_opened: dict[str, SandboxSlots] = {}
