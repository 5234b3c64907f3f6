"""The addresses file: rollout services can join and leave while the learner trains.

`rollout.addresses_file` names a text file with one `host:port` per line (`#` starts a comment,
blank lines are ignored, IPv6 hosts in brackets: `[::1]:50052`). The learner re-reads it every
`rollout.addresses_poll_s` seconds when it changed and reconciles the pool:

- a new line  -> the service joins: it first receives the current weights, then prompts;
- a line gone -> the service is drained: no new prompts or weights, its running streams finish
  (or their prompts are re-sent elsewhere if it dies), then its channel is closed.

Addresses from `rollout.addresses` are permanent and never removed by the file. A bad line is
logged with its line number and ignored; an unreadable or missing file keeps the current
membership (a deleted file must not drain every service at once). Write the file atomically
(write a temporary file, then rename it over the old one) so the learner never reads half of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from grpo_common.addresses import AddressError, parse_address

logger = logging.getLogger(__name__)


@dataclass
class AddressList:
    """The valid addresses of a file (in file order, without duplicates) and its bad lines."""

    addresses: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # "line 3: 'x' has no ':port'"


def parse_address_lines(text: str) -> AddressList:
    parsed = AddressList()
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            address = parse_address(line)
        except AddressError as exc:
            parsed.problems.append(f"line {number}: {exc}")
            continue
        if address not in parsed.addresses:
            parsed.addresses.append(address)
    return parsed


class Membership(Protocol):
    """What the address book changes: the pool's set of file-listed services."""

    def sync_listed(self, addresses: list[str]) -> None: ...


class AddressBook:
    """Watches the addresses file and keeps `membership` equal to its valid lines."""

    def __init__(self, path: Path, membership: Membership, poll_s: float = 2.0) -> None:
        self.path = Path(path)
        self.membership = membership
        self.poll_s = poll_s
        self._seen: tuple[int, int, int] | None = None  # (inode, mtime_ns, size) last read
        self._last_error = ""
        self._task: asyncio.Task | None = None

    def read(self) -> AddressList | None:
        """The file's addresses (bad lines logged), or None if it cannot be read (logged once)."""
        try:
            stat = self.path.stat()
            text = self.path.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            error = f"{exc.strerror or exc}"
            if error != self._last_error:
                logger.warning(
                    "rollout.addresses_file %s cannot be read (%s); keeping the current rollout services. "
                    "Create it with one host:port per line.",
                    self.path,
                    error,
                )
            self._last_error = error
            self._seen = None
            return None
        self._last_error = ""
        self._seen = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        parsed = parse_address_lines(text)
        for problem in parsed.problems:
            logger.warning("rollout.addresses_file %s %s; line ignored", self.path, problem)
        return parsed

    def changed(self) -> bool:
        try:
            stat = self.path.stat()
        except OSError:
            return self._seen is not None or not self._last_error
        return (stat.st_ino, stat.st_mtime_ns, stat.st_size) != self._seen

    def reload(self) -> bool:
        """Read the file and reconcile the pool; False when the file could not be read."""
        parsed = self.read()
        if parsed is None:
            return False
        self.membership.sync_listed(parsed.addresses)
        return True

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._watch(), name=f"addresses-file-{self.path.name}")

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.poll_s)
            try:
                if self.changed():
                    self.reload()
            except Exception:  # never let a file problem stop training
                logger.exception("re-reading rollout.addresses_file %s failed; will try again", self.path)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


def write_addresses_atomically(path: Path, addresses: list[str]) -> None:
    """Replace the file in one rename (what operators and tests should do)."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text("".join(f"{a}\n" for a in addresses), encoding="utf-8")
    os.replace(temporary, path)
