"""``state/health.json``: is this instance watching, scanning and working? Written atomically.

``healthy`` is the same condition that gates ``WATCHDOG=1``: the observer is alive (or the
instance polls) and the last reconcile scan is younger than twice its interval.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flowdrop.core.engine.compilecache import CacheStats
from flowdrop.core.fs.storage import atomic_write_bytes


@dataclass
class HealthSnapshot:
    instance: str
    pid: int
    watch_mode: str
    observer_alive: bool
    healthy: bool
    started_at: datetime
    last_scan_at: datetime | None
    last_scan_age_seconds: float | None
    queue_depth: int
    running: int
    workers: int
    draining: bool
    counters: dict[str, int] = field(default_factory=dict)
    observer_restarts: int = 0
    overflows: int = 0
    worker_processes: int = 0  # alive; 0 when the orchestrator runs in threads
    worker_processes_replaced: int = 0
    timeouts: int = 0
    compile_cache: CacheStats = field(default_factory=lambda: CacheStats(0, 0, 0, 0, 0))

    def to_json(self) -> dict[str, Any]:
        def iso(value: datetime | None) -> str | None:
            return value.astimezone(UTC).isoformat() if value else None

        return {
            "schemaVersion": 1,
            "instance": self.instance,
            "pid": self.pid,
            "healthy": self.healthy,
            "watchMode": self.watch_mode,
            "observerAlive": self.observer_alive,
            "startedAt": iso(self.started_at),
            "lastScanAt": iso(self.last_scan_at),
            "lastScanAgeSeconds": (
                None if self.last_scan_age_seconds is None else round(self.last_scan_age_seconds, 3)
            ),
            "queueDepth": self.queue_depth,
            "running": self.running,
            "workers": self.workers,
            "draining": self.draining,
            "observerRestarts": self.observer_restarts,
            "overflows": self.overflows,
            "workerProcesses": self.worker_processes,
            "workerProcessesReplaced": self.worker_processes_replaced,
            "timeouts": self.timeouts,
            "compileCache": {
                "hits": self.compile_cache.hits,
                "misses": self.compile_cache.misses,
                "entries": self.compile_cache.entries,
            },
            "counters": dict(sorted(self.counters.items())),
            "updatedAt": datetime.now(UTC).isoformat(),
        }


def write_health(path: Path, snapshot: HealthSnapshot) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = json.dumps(snapshot.to_json(), indent=2).encode() + b"\n"
    # Rewritten every health_interval and at start: a cut may show the previous one again.
    atomic_write_bytes(path, data, durable=False)


def read_health(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
