"""Publishing the daemon's state: systemd STATUS=, health.json, metrics.prom and WATCHDOG=1."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import structlog

from flowdrop.daemon.config import Settings
from flowdrop.daemon.health import HealthSnapshot, write_health
from flowdrop.daemon.metrics import write_metrics
from flowdrop.daemon.notify import Notifier

log = structlog.get_logger("flowdrop.daemon")


class Reporter:
    """Publishes a snapshot: systemd STATUS= on change, health.json and metrics.prom every
    ``health_interval``, and WATCHDOG=1 while healthy (never before READY)."""

    def __init__(self, notifier: Notifier, clock: Callable[[], float] = time.monotonic) -> None:
        self.notifier = notifier
        self._clock = clock
        self._last_health = -math.inf
        self._last_ping = -math.inf
        self._last_status = ""

    def report(
        self,
        snap: HealthSnapshot,
        durations: dict[str, float],
        settings: Settings,
        *,
        ready: bool,
        force: bool = False,
    ) -> None:
        now = self._clock()
        text = (
            f"{snap.watch_mode}; queue {snap.queue_depth}; running {snap.running}; "
            f"succeeded {snap.counters.get('succeeded', 0)}, failed "
            f"{snap.counters.get('failed', 0)}, rejected {snap.counters.get('rejected', 0)}"
        )
        if text != self._last_status:
            self.notifier.status(text)
            self._last_status = text
        if force or now - self._last_health >= settings.health_interval:
            self._last_health = now
            try:
                write_health(settings.health_path, snap)
                write_metrics(settings.metrics_path, snap, durations)
            except Exception as exc:
                log.warning("health_write_failed", error=str(exc))
        interval = self.notifier.watchdog_interval
        due = interval is not None and now - self._last_ping >= interval
        if due and snap.healthy and ready:
            self.notifier.watchdog()
            self._last_ping = now
