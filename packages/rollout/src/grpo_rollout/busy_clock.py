"""How long the service has been up, and of that how long it had work: the two GetInfo figures.

The generator counts as busy while at least one batch is generating or being scored; batches that
overlap count once (busy time is the measure of the union of their intervals), so
`busy_seconds <= uptime_seconds` always holds. A learner polls both twice and takes

    utilisation = (busy_2 - busy_1) / (uptime_2 - uptime_1),    idle fraction = 1 - utilisation.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator


class BusyClock:
    """Union of the intervals during which some work was running, on a monotonic clock."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._started = clock()
        self._running = 0
        self._busy_since = 0.0
        self._busy_total = 0.0

    @contextlib.contextmanager
    def busy(self) -> Iterator[None]:
        """Mark the body as work; nested or concurrent bodies count their overlap once."""
        if self._running == 0:
            self._busy_since = self._clock()
        self._running += 1
        try:
            yield
        finally:
            self._running -= 1
            if self._running == 0:
                self._busy_total += self._clock() - self._busy_since

    def read(self) -> tuple[float, float]:
        """(uptime_seconds, busy_seconds), both from one reading of the clock."""
        now = self._clock()
        busy = self._busy_total + (now - self._busy_since if self._running else 0.0)
        return now - self._started, busy
