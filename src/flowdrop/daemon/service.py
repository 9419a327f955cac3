"""The daemon's main loop: scan, watch, reconcile, report; workers do the requests.

One thread (the caller of :meth:`Daemon.run`) owns the loop. It sleeps on a self-pipe, so
signal handlers (:mod:`flowdrop.daemon.lifecycle`) and the watcher only set flags and write a
byte. Each turn it applies a pending stop or reload, rescans when due (reconcile interval,
polling interval, after an inotify overflow or an observer restart), re-queues deferred young
files, writes health and metrics, and pings the systemd watchdog while watching is healthy.
"""

from __future__ import annotations

import contextlib
import errno
import importlib
import math
import os
import select
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import structlog

from flowdrop.core.contract import RunRequest, RunResult
from flowdrop.core.fs.storage import sweep_stale_temps
from flowdrop.daemon.claim import list_inbox, list_work, recover_dead_instances
from flowdrop.daemon.config import ConfigError, Settings, WatchMode, load_settings
from flowdrop.daemon.health import HealthSnapshot, write_health
from flowdrop.daemon.metrics import write_metrics
from flowdrop.daemon.notify import Notifier
from flowdrop.daemon.process import Limits, Processor, ProgressCallback, RequestHandler, Stats
from flowdrop.daemon.spool import InstanceLock, Scrubber, Spool
from flowdrop.daemon.watcher import InboxWatcher, OverflowDetector, choose_mode
from flowdrop.daemon.worker import WorkerPool, WorkQueue

log = structlog.get_logger("flowdrop.daemon")

ProcessorFactory = Callable[[Settings], Processor]
# After activity on a temp name in the inbox: scan again after these delays (seconds).
QUICK_SCANS = (0.002, 0.01, 0.05, 0.2)
QUICK_SCAN_GRID = 0.002


class StartupError(Exception):
    """The daemon cannot start (exit code 2)."""


def default_processor(settings: Settings) -> Processor:
    """``processor:`` from the config ("module:factory"), else the core orchestrator."""
    if settings.processor:
        module_name, _, attr = settings.processor.partition(":")
        factory = getattr(importlib.import_module(module_name), attr)
        processor: Processor = factory(settings)
        return processor
    from flowdrop.core.orchestration import orchestrator

    roots = orchestrator.Roots(
        runs=settings.runs_root,
        telemetry=settings.telemetry_root,
        templates=tuple(settings.templates),
    )

    def run(request: RunRequest, request_id: str, progress: ProgressCallback) -> RunResult:
        return orchestrator.orchestrate(request, roots, request_id=request_id, progress=progress)

    return run


class Waker:
    """A self-pipe: ``wake()`` is safe from signal handlers and other threads."""

    def __init__(self) -> None:
        self._r, self._w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    def wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._w, b"x")

    def wait(self, timeout: float) -> None:
        with contextlib.suppress(InterruptedError):
            ready, _, _ = select.select([self._r], [], [], max(0.0, timeout))
            if ready:
                with contextlib.suppress(BlockingIOError):
                    while os.read(self._r, 4096):
                        pass

    def close(self) -> None:
        for fd in (self._r, self._w):
            with contextlib.suppress(OSError):
                os.close(fd)


class Daemon:
    def __init__(
        self,
        settings: Settings,
        *,
        config_path: Path | None = None,
        processor_factory: ProcessorFactory = default_processor,
        notifier: Notifier | None = None,
        once: bool = False,
    ) -> None:
        self.settings = settings
        self.config_path = config_path
        self.processor_factory = processor_factory
        self.notifier = notifier or Notifier()
        self.once = once
        self.spool = Spool(settings.spool, settings.instance)
        self.stats = Stats()
        self.queue = WorkQueue()
        self.waker = Waker()
        self.stop_requested = False
        self.ready = threading.Event()  # set once the first scan is done (READY=1)
        self.lock_wait = 5.0  # a restarted instance may wait for its predecessor's lock
        self.reload_requested = False
        self._overflowed = False
        self._deferred: dict[str, float] = {}
        self._backoff: dict[tuple[str, str], float] = {}
        self._quick_scans: list[float] = []
        self._deferred_lock = threading.Lock()
        self._mode = WatchMode.POLLING
        self._watcher: InboxWatcher | None = None
        self._overflow = OverflowDetector(self._on_overflow)
        self._lock = InstanceLock(self.spool)
        self._started_at = datetime.now(UTC)
        self._last_scan_wall: datetime | None = None
        self._last_scan = 0.0
        self._last_health = 0.0
        self._last_ping = 0.0
        self._last_status = ""
        self._handler = self._make_handler(settings)
        self.pool = WorkerPool(
            self.spool,
            self.queue,
            lambda: self._handler,
            size=settings.workers,
            max_bytes=lambda: self.settings.max_request_bytes,
            stale_after=lambda: self.settings.stale_after,
            on_deferred=self._defer,
            on_idle=self.waker.wake,
            on_error=self._backoff_item,
        )

    # --- flags (signal-safe) ---------------------------------------------------------------

    def request_stop(self) -> None:
        self.stop_requested = True
        self.waker.wake()

    def request_reload(self) -> None:
        self.reload_requested = True
        self.waker.wake()

    def _on_overflow(self) -> None:
        self._overflowed = True
        self.waker.wake()

    def _on_event(self, name: str) -> None:
        if self.queue.put(("inbox", name)):
            self.waker.wake()

    def _on_hint(self) -> None:
        """A writer is busy with a temp name: scan the inbox soon, a few times."""
        now = time.monotonic()
        # Times snap up to a grid so a burst of hints (thousands a second in a flood) adds
        # nothing once its slots are booked: the list stays short and a hint stays O(1)-ish.
        wanted = {math.ceil((now + d) / QUICK_SCAN_GRID) * QUICK_SCAN_GRID for d in QUICK_SCANS}
        with self._deferred_lock:
            if not wanted.issubset(self._quick_scans):
                self._quick_scans = sorted({*self._quick_scans, *wanted})
        self.waker.wake()

    def _quick_scan_due(self) -> float:
        """Run a due quick scan; return seconds until the next one (inf when none)."""
        now = time.monotonic()
        with self._deferred_lock:
            due = [t for t in self._quick_scans if t <= now]
            self._quick_scans = [t for t in self._quick_scans if t > now]
            following = self._quick_scans[0] - now if self._quick_scans else float("inf")
        if due:
            for name in list_inbox(self.spool):
                if self.queue.put(("inbox", name)):
                    self.stats.add("hinted")
        return following

    def _backoff_item(self, item: tuple[str, str]) -> None:
        """A file whose handling raised: retry it only after a reconcile interval."""
        with self._deferred_lock:
            self._backoff[("work", item[1])] = time.monotonic() + self.settings.reconcile_interval

    def _in_backoff(self, item: tuple[str, str]) -> bool:
        with self._deferred_lock:
            until = self._backoff.get(item)
            if until is not None and until <= time.monotonic():
                del self._backoff[item]
                return False
            return until is not None

    def _defer(self, name: str, delay: float) -> None:
        with self._deferred_lock:
            self._deferred[name] = time.monotonic() + delay
        self.waker.wake()

    # --- setup -----------------------------------------------------------------------------

    def _make_handler(self, settings: Settings) -> RequestHandler:
        scrub = Scrubber(
            {
                "spool": settings.spool,
                "runs": settings.runs_root,
                "telemetry": settings.telemetry_root,
                **{f"templates{i}": path for i, path in enumerate(settings.templates)},
            }
        )
        return RequestHandler(
            self.spool,
            self.processor_factory(settings),
            Limits(settings.max_request_bytes, settings.max_attempts),
            scrub=scrub,
            stats=self.stats,
            should_stop=lambda: self.stop_requested,
        )

    def _prepare(self) -> None:
        try:
            self.spool.ensure(own_work=False)
            for root in (self.settings.runs_root, self.settings.telemetry_root):
                root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            msg = f"cannot create the spool or roots: {exc.strerror or exc} ({exc.filename})"
            raise StartupError(msg) from None
        deadline = time.monotonic() + self.lock_wait
        while not self._lock.acquire():
            if time.monotonic() > deadline:
                msg = f"another flowdrop process is running as instance '{self.settings.instance}'"
                raise StartupError(msg)
            time.sleep(0.1)
        self.spool.work.mkdir(parents=True, exist_ok=True)  # only now: see Spool.ensure
        self._sweep_debris()

    def _sweep_debris(self) -> None:
        """Remove temporaries a crash (ours or a peer's) left in the outbox, spool and roots."""
        places = (
            self.spool.outbox,
            self.spool.quarantine,
            self.spool.done,
            self.spool.ledger,
            self.spool.state,
            self.settings.runs_root,
            self.settings.telemetry_root,
        )
        for place in places:
            removed = sweep_stale_temps(place, older_than=self.settings.temp_max_age)
            if removed:
                log.warning("temp_debris_removed", directory=place.name, names=removed)

    def _arm(self) -> None:
        self._mode = choose_mode(self.settings.watch, self.spool.inbox)
        if self._mode is WatchMode.INOTIFY:
            watcher = InboxWatcher(self.spool.inbox, self._on_event, self._on_hint)
            try:
                watcher.start()
            except OSError as exc:
                if self.settings.watch is WatchMode.INOTIFY and exc.errno not in (
                    errno.ENOSPC,
                    errno.EMFILE,
                ):
                    raise
                log.warning(
                    "watch_fallback_polling",
                    reason=exc.strerror or str(exc),
                    hint="raise fs.inotify.max_user_watches / max_user_instances",
                )
                self._mode = WatchMode.POLLING
            else:
                self._watcher = watcher
                self._overflow.install()
        log.info("watch_armed", mode=self._mode.value, inbox=str(self.spool.inbox))

    # --- scanning --------------------------------------------------------------------------

    def scan(self) -> int:
        """Recover dead instances' work, queue our work dir and the inbox; returns items queued."""
        queued = 0
        recovered = recover_dead_instances(self.spool)
        if recovered:
            log.warning("work_recovered", files=[p.name for p in recovered], count=len(recovered))
        for name in list_work(self.spool):
            item = ("work", name)
            if not self.queue.busy(item) and not self._in_backoff(item):
                queued += self.queue.put(("work", name))
        for name in list_inbox(self.spool):
            queued += self.queue.put(("inbox", name))
        self._last_scan = time.monotonic()
        self._last_scan_wall = datetime.now(UTC)
        return queued

    def _scan_interval(self) -> float:
        if self._mode is WatchMode.POLLING:
            return min(self.settings.poll_interval, self.settings.reconcile_interval)
        return self.settings.reconcile_interval

    # --- health ----------------------------------------------------------------------------

    @property
    def observer_alive(self) -> bool:
        if self._mode is WatchMode.POLLING:
            return True
        return self._watcher is not None and self._watcher.alive

    def healthy(self) -> bool:
        fresh = time.monotonic() - self._last_scan < 2 * self._scan_interval() + 1
        return self.observer_alive and fresh and not self.stop_requested

    def snapshot(self) -> HealthSnapshot:
        counts, _ = self.stats.snapshot()
        age = time.monotonic() - self._last_scan if self._last_scan_wall else None
        return HealthSnapshot(
            instance=self.settings.instance,
            pid=os.getpid(),
            watch_mode=self._mode.value,
            observer_alive=self.observer_alive,
            healthy=self.healthy(),
            started_at=self._started_at,
            last_scan_at=self._last_scan_wall,
            last_scan_age_seconds=age,
            queue_depth=len(self.queue) + len(self._deferred),
            running=self.pool.running,
            workers=self.pool.size,
            draining=self.stop_requested,
            counters=counts,
            observer_restarts=self._watcher.restarts if self._watcher else 0,
            overflows=self._overflow.count,
        )

    def _report(self, force: bool = False) -> None:
        now = time.monotonic()
        snap = self.snapshot()
        text = (
            f"{snap.watch_mode}; queue {snap.queue_depth}; running {snap.running}; "
            f"succeeded {snap.counters.get('succeeded', 0)}, failed "
            f"{snap.counters.get('failed', 0)}, rejected {snap.counters.get('rejected', 0)}"
        )
        if text != self._last_status:
            self.notifier.status(text)
            self._last_status = text
        if force or now - self._last_health >= self.settings.health_interval:
            self._last_health = now
            _, durations = self.stats.snapshot()
            try:
                write_health(self.settings.health_path, snap)
                write_metrics(self.settings.metrics_path, snap, durations)
            except Exception as exc:
                log.warning("health_write_failed", error=str(exc))
        interval = self.notifier.watchdog_interval
        due = interval is not None and now - self._last_ping >= interval
        if due and snap.healthy and self.ready.is_set():
            self.notifier.watchdog()
            self._last_ping = now

    # --- reload ----------------------------------------------------------------------------

    def reload(self) -> bool:
        self.reload_requested = False
        self.notifier.reloading()
        try:
            new = load_settings(self.config_path)
            if new.spool != self.settings.spool:
                raise ConfigError(["spool: cannot change on reload; restart instead"], "reload")
            if new.instance != self.settings.instance:
                raise ConfigError(["instance: cannot change on reload; restart instead"], "reload")
            handler = self._make_handler(new)
        except ConfigError as exc:
            log.error("config_reload_rejected", problems=exc.problems, kept="previous")
            self.notifier.ready(status="reload rejected; previous configuration kept")
            self.stats.add("reload_failures")
            return False
        except Exception as exc:
            log.error("config_reload_rejected", problems=[repr(exc)], kept="previous")
            self.notifier.ready(status="reload rejected; previous configuration kept")
            self.stats.add("reload_failures")
            return False
        old_mode = self.settings.watch
        self.settings = new
        self._handler = handler
        self.pool.resize(new.workers)
        if new.watch != old_mode:
            self._disarm()
            self._arm()
        self.stats.add("reloads")
        log.info("config_reloaded", workers=new.workers, watch=self._mode.value)
        self.scan()
        self.notifier.ready(status="configuration reloaded")
        return True

    def _disarm(self) -> None:
        if self._watcher is not None:
            self._watcher.stop()
            self._watcher = None
        self._overflow.uninstall()

    # --- the loop --------------------------------------------------------------------------

    def _requeue_deferred(self) -> float:
        now = time.monotonic()
        soonest = float("inf")
        with self._deferred_lock:
            due = [name for name, when in self._deferred.items() if when <= now]
            for name in due:
                del self._deferred[name]
            if self._deferred:
                soonest = min(self._deferred.values()) - now
        for name in due:
            self.queue.put(("inbox", name))
        return soonest

    def _tick_timeout(self, soonest_deferred: float) -> float:
        timeout = min(1.0, self._scan_interval(), soonest_deferred)
        interval = self.notifier.watchdog_interval
        if interval is not None:
            timeout = min(timeout, interval / 2)
        return max(0.001, timeout)

    def _idle(self) -> bool:
        with self._deferred_lock:
            deferred = bool(self._deferred)
        return not deferred and len(self.queue) == 0 and self.pool.running == 0

    def run(self) -> int:
        """Serve until stopped (or, with ``once``, until the inbox is drained). Exit code."""
        self._prepare()
        try:
            self._arm()
            self.pool.start()
            queued = self.scan()
            log.info(
                "daemon_ready",
                instance=self.settings.instance,
                workers=self.settings.workers,
                queued=queued,
                once=self.once,
            )
            self._report(force=True)
            self.notifier.ready(status=f"ready; {self._mode.value}; queue {queued}")
            self.ready.set()
            while not self.stop_requested:
                if self.reload_requested:
                    self.reload()
                if self._watcher is not None and not self._watcher.alive:
                    log.error("observer_died", action="restarting and rescanning")
                    try:
                        self._watcher.restart()
                    except OSError as exc:
                        log.error("observer_restart_failed", error=str(exc))
                    self.scan()
                if self._overflowed:
                    self._overflowed = False
                    log.warning("inotify_overflow", action="rescanning the inbox")
                    self.scan()
                elif time.monotonic() - self._last_scan >= self._scan_interval():
                    self.scan()
                soonest = min(self._requeue_deferred(), self._quick_scan_due())
                self._report()
                if self.once and self._idle():
                    time.sleep(0.05)  # let a just-finished worker's wake-up settle
                    if self._idle() and not self.scan() and self._idle():
                        break
                self.waker.wait(self._tick_timeout(soonest))
            return self._drain()
        finally:
            self._disarm()
            with contextlib.suppress(OSError):
                self.spool.work.rmdir()  # only when empty: leftovers stay for recovery
            self._lock.release()
            self.waker.close()
            self.notifier.close()

    def _drain(self) -> int:
        if self.stop_requested:
            self.notifier.stopping()
            log.info(
                "daemon_stopping",
                running=self.pool.running,
                drainTimeout=self.settings.drain_timeout,
            )
        self.pool.stop_taking()
        self.queue.close()
        drained = self.pool.join(self.settings.drain_timeout)
        if not drained:
            log.warning(
                "drain_timeout",
                running=self.pool.running,
                action="left in work/ for recovery; they resume as interrupted attempts",
            )
            self._handler.mark_interrupted()
        self._report(force=True)
        log.info("daemon_stopped", drained=drained)
        return 0
