"""Thread-safe request counters and durations for health.json and metrics.prom."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field


@dataclass
class Stats:
    """Counters by outcome (``succeeded``, ``rejected``, ``recovered``, ...) and total duration."""

    counts: Counter[str] = field(default_factory=Counter)
    durations: dict[str, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, key: str, amount: int = 1) -> None:
        with self._lock:
            self.counts[key] += amount

    def observe(self, seconds: float) -> None:
        with self._lock:
            self.durations["sum"] = self.durations.get("sum", 0.0) + seconds
            self.durations["count"] = self.durations.get("count", 0.0) + 1

    def snapshot(self) -> tuple[dict[str, int], dict[str, float]]:
        with self._lock:
            return dict(self.counts), dict(self.durations)
