"""When to look at a file again: young files deferred, failing files backed off, quick scans.

Events are only hints (see the spool protocol), so the main loop keeps three small timetables:
inbox files still being written (deferred a moment), claimed files whose handling raised (retried
after a reconcile interval, not in a hot loop), and quick inbox scans booked after a writer was
seen busy with a temporary name. All are monotonic-clock times behind one lock.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

Item = tuple[str, str]
# After activity on a temp name in the inbox: scan again after these delays (seconds).
QUICK_SCANS = (0.002, 0.01, 0.05, 0.2)
QUICK_SCAN_GRID = 0.002


class Schedule:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._deferred: dict[str, float] = {}
        self._backoff: dict[Item, float] = {}
        self._quick_scans: list[float] = []

    def defer(self, name: str, delay: float) -> None:
        with self._lock:
            self._deferred[name] = self._clock() + delay

    def due_deferred(self) -> tuple[list[str], float]:
        """Names whose delay has passed (forgotten here) and seconds until the next one."""
        now = self._clock()
        with self._lock:
            due = [name for name, when in self._deferred.items() if when <= now]
            for name in due:
                del self._deferred[name]
            soonest = min(self._deferred.values()) - now if self._deferred else math.inf
        return due, soonest

    @property
    def deferred(self) -> int:
        with self._lock:
            return len(self._deferred)

    def back_off(self, item: Item, seconds: float) -> None:
        with self._lock:
            self._backoff[item] = self._clock() + seconds

    def in_backoff(self, item: Item) -> bool:
        with self._lock:
            until = self._backoff.get(item)
            if until is not None and until <= self._clock():
                del self._backoff[item]
                return False
            return until is not None

    def hint(self) -> None:
        """A writer is busy with a temp name: book a few quick scans."""
        now = self._clock()
        # Times snap up to a grid so a burst of hints (thousands a second in a flood) adds
        # nothing once its slots are booked: the list stays short and a hint stays O(1)-ish.
        wanted = {math.ceil((now + d) / QUICK_SCAN_GRID) * QUICK_SCAN_GRID for d in QUICK_SCANS}
        with self._lock:
            if not wanted.issubset(self._quick_scans):
                self._quick_scans = sorted({*self._quick_scans, *wanted})

    def quick_scan_due(self) -> tuple[bool, float]:
        """Whether a booked quick scan is due (consumed) and seconds until the next one."""
        now = self._clock()
        with self._lock:
            due = any(t <= now for t in self._quick_scans)
            self._quick_scans = [t for t in self._quick_scans if t > now]
            following = self._quick_scans[0] - now if self._quick_scans else math.inf
        return due, following

    @property
    def quick_scans(self) -> int:
        with self._lock:
            return len(self._quick_scans)
