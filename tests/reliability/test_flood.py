"""Floods and resource bounds (heavy): 20,000 requests while running, 10,000 while stopped.

The worlds live on a tmpfs when mounting is permitted so the numbers measure the daemon (claim,
parse, ledger, outbox, archive) rather than this VM's fsync latency (~0.6 ms per durable write
on its ext4; see docs/reliability.md). Reproduce::

    .venv/bin/pytest tests/reliability/test_flood.py -m heavy -s
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from flowdrop.daemon.health import read_health
from tests.reliability.reliability_world import Drop, World, record, request_body

WORKERS = 4


def _bulk_drop(world: World, prefix: str, count: int) -> None:
    """Drop ``count`` requests as fast as one process can (hidden temp name, then rename)."""
    inbox = world.inbox
    for index in range(count):
        request_id = f"{prefix}{index}"
        raw = json.dumps(request_body(request_id)).encode()
        temp = inbox / f".{request_id}.tmp"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.write(fd, raw)
        os.close(fd)
        os.rename(temp, inbox / f"{request_id}.json")
        world.drops.append(Drop(f"{request_id}.json", request_id, "done", "succeeded"))


class Sampler(threading.Thread):
    """Samples VmRSS, open fds and health.json of a daemon every 0.2 s."""

    def __init__(self, pid: int, health: Path) -> None:
        super().__init__(daemon=True)
        self.pid, self.health = pid, health
        self.stop_event = threading.Event()
        self.peak_rss_kb = 0
        self.peak_fds = 0
        self.peak_queue = 0
        self.observer_dead_seen = 0
        self.samples = 0

    def run(self) -> None:
        while not self.stop_event.wait(0.2):
            try:
                status = Path(f"/proc/{self.pid}/status").read_text()
                fds = len(os.listdir(f"/proc/{self.pid}/fd"))
            except OSError:
                return
            rss = next(
                int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")
            )
            self.peak_rss_kb = max(self.peak_rss_kb, rss)
            self.peak_fds = max(self.peak_fds, fds)
            health = read_health(self.health) or {}
            self.peak_queue = max(self.peak_queue, int(health.get("queueDepth") or 0))
            if health and not health.get("observerAlive", True):
                self.observer_dead_seen += 1
            self.samples += 1

    def finish(self) -> dict[str, Any]:
        self.stop_event.set()
        self.join(timeout=5)
        hwm = 0
        try:
            status = Path(f"/proc/{self.pid}/status").read_text()
            hwm = next(
                int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")
            )
        except OSError:
            pass
        return {
            "peakRssMiB": round(self.peak_rss_kb / 1024, 1),
            "vmHwmMiB": round(hwm / 1024, 1),
            "peakFds": self.peak_fds,
            "peakQueueDepth": self.peak_queue,
            "samples": self.samples,
        }


@pytest.mark.heavy
def test_flood_while_stopped_10000(fast_world: World) -> None:
    """10,000 requests dropped while the daemon is down: all processed after start, once each."""
    world = fast_world
    world.config(workers=WORKERS, reconcile_interval=2)
    _bulk_drop(world, "s", 10_000)
    started = time.monotonic()
    daemon = world.start()
    ready = time.monotonic() - started
    world.wait_settled(timeout=240)
    elapsed = time.monotonic() - started
    assert daemon.stop() == 0
    report = world.check()
    assert report.states == {"succeeded": 10_000}
    assert sum(report.executions.values()) == 10_000
    record(
        "flood_stopped",
        {
            "requests": 10_000,
            "seconds": round(elapsed, 1),
            "readyAfterScanSeconds": round(ready, 2),
            "requestsPerSecond": round(10_000 / elapsed),
            "tmpfs": world.on_tmpfs,
        },
    )


@pytest.mark.heavy
def test_flood_while_running_20000_and_resource_bounds(fast_world: World) -> None:
    """20,000 requests dropped into a running daemon (inotify overflows): all end exactly once,
    RSS and open fds stay bounded, the watcher stays alive."""
    world = fast_world
    world.config(workers=WORKERS, reconcile_interval=2, health_interval=0.2)
    daemon = world.start()
    sampler = Sampler(daemon.pid, world.spool / "state" / "health.json")
    sampler.start()
    started = time.monotonic()
    _bulk_drop(world, "f", 20_000)
    dropped = time.monotonic() - started
    world.wait_settled(timeout=300)
    elapsed = time.monotonic() - started
    bounds = sampler.finish()
    health = read_health(world.spool / "state" / "health.json") or {}
    overflows = len(daemon.events("inotify_overflow"))
    assert daemon.proc.poll() is None
    assert health.get("observerAlive") is True and sampler.observer_dead_seen == 0
    assert daemon.stop() == 0
    report = world.check()
    assert report.states == {"succeeded": 20_000}
    assert sum(report.executions.values()) == 20_000
    # Bounded: the queue holds names, not requests; fds are workers' files + watch + logs.
    assert bounds["vmHwmMiB"] < 200, bounds
    assert bounds["peakFds"] < 40, bounds
    record(
        "flood_running",
        {
            "requests": 20_000,
            "dropSeconds": round(dropped, 1),
            "seconds": round(elapsed, 1),
            "requestsPerSecond": round(20_000 / elapsed),
            "inotifyOverflows": overflows,
            "maxQueuedEvents": int(Path("/proc/sys/fs/inotify/max_queued_events").read_text()),
            "tmpfs": world.on_tmpfs,
            **bounds,
        },
    )


def test_hint_bursts_stay_cheap(tmp_path: Path) -> None:
    """Regression: 50,000 temp-name hints (a flood's worth) keep the quick-scan schedule short
    (it once grew by four entries per hint and was re-sorted every time: quadratic)."""
    from flowdrop.daemon.config import load_settings
    from flowdrop.daemon.schedule import QUICK_SCAN_GRID, QUICK_SCANS
    from flowdrop.daemon.service import Daemon
    from flowdrop.daemon.testing import write_config

    daemon = Daemon(load_settings(write_config(tmp_path)))
    try:
        started = time.monotonic()
        longest = 0
        for _ in range(50_000):
            daemon._on_hint()
            longest = max(longest, daemon.schedule.quick_scans)
        elapsed = time.monotonic() - started
    finally:
        daemon.waker.close()
    # Unpruned here (no main loop): at most one booking per grid slot per offset.
    bound = len(QUICK_SCANS) * ((elapsed + max(QUICK_SCANS)) / QUICK_SCAN_GRID + 2)
    assert longest <= bound, (longest, bound)
    assert elapsed < 10, elapsed


@pytest.mark.heavy
def test_a_real_inotify_overflow_triggers_the_rescan(fast_world: World) -> None:
    """More drops than the kernel queues (fs.inotify.max_queued_events) while the daemon is
    stopped: the reader gets IN_Q_OVERFLOW, the daemon rescans at once (not at the next
    reconcile) and every request ends exactly once."""
    import signal

    world = fast_world
    world.config(workers=WORKERS, reconcile_interval=3600, health_interval=0.5)
    daemon = world.start()
    limit = int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())
    staging = world.base / "staging"  # same filesystem as the inbox: drops are renames
    staging.mkdir()
    count = limit + 500
    for index in range(count):  # written outside the inbox: one IN_MOVED_TO per drop
        request_id = f"o{index}"
        (staging / f"{request_id}.json").write_text(json.dumps(request_body(request_id)))
    daemon.signal(signal.SIGSTOP)
    try:
        for index in range(count):
            os.rename(staging / f"o{index}.json", world.inbox / f"o{index}.json")
            world.drops.append(Drop(f"o{index}.json", f"o{index}", "done", "succeeded"))
    finally:
        daemon.signal(signal.SIGCONT)
    staging.rmdir()
    world.wait_settled(timeout=300)
    assert daemon.events("inotify_overflow"), "the kernel queue never overflowed"
    assert daemon.stop() == 0
    report = world.check()
    assert report.states == {"succeeded": count}
    assert sum(report.executions.values()) == count
