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
import os
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import structlog

from flowdrop.core.engine import compilecache
from flowdrop.core.fs import failpoints
from flowdrop.daemon.claim import list_inbox, list_work, recover_dead_instances, sweep_debris
from flowdrop.daemon.config import ConfigError, Settings, WatchMode, load_settings
from flowdrop.daemon.health import HealthSnapshot
from flowdrop.daemon.notify import Notifier
from flowdrop.daemon.process import RequestHandler, make_handler
from flowdrop.daemon.processor import ProcessorFactory, default_processor
from flowdrop.daemon.reporter import Reporter
from flowdrop.daemon.schedule import Schedule
from flowdrop.daemon.spool import InstanceLock, Spool
from flowdrop.daemon.stats import Stats
from flowdrop.daemon.statuspage import StatusPageKeeper
from flowdrop.daemon.waker import Waker
from flowdrop.daemon.watcher import InboxWatcher, OverflowDetector, choose_mode
from flowdrop.daemon.worker import WorkerPool, WorkQueue
from flowdrop.daemon.workerprocs import WorkerProcesses, WorkerStats

log = structlog.get_logger("flowdrop.daemon")


class StartupError(Exception):
    """The daemon cannot start (exit code 2)."""


class Daemon:
    def __init__(
        self,
        settings: Settings,
        *,
        config_path: Path | None = None,
        processor_factory: ProcessorFactory = default_processor,
        notifier: Notifier | None = None,
        once: bool = False,
        on_ready: Callable[[], None] = lambda: None,
    ) -> None:
        self.settings = settings
        self.config_path = config_path
        self.processor_factory = processor_factory
        self.notifier = notifier or Notifier()
        self.once = once
        self.on_ready = on_ready  # e.g. --detach writes its pidfile: ready, not merely forked
        self.spool = Spool(settings.spool, settings.instance)
        self.stats = Stats()
        self.queue = WorkQueue()
        self.waker = Waker()
        self.stop_requested = False
        self.ready = threading.Event()  # set once the first scan is done (READY=1)
        self.lock_wait = 5.0  # a restarted instance may wait for its predecessor's lock
        self.reload_requested = False
        self._overflowed = False
        self.schedule = Schedule()
        self._mode = WatchMode.POLLING
        self._watcher: InboxWatcher | None = None
        self._overflow = OverflowDetector(self._on_overflow)
        self._lock = InstanceLock(self.spool)
        self._started_at = datetime.now(UTC)
        self._last_scan_wall: datetime | None = None
        self._last_scan = 0.0
        self.reporter = Reporter(self.notifier)
        # The spool overview page is kept by its own thread, never on a request's path.
        self.status_page = StatusPageKeeper(self.spool, settings.runs_root)
        # The orchestrator runs in worker processes; a custom processor (or any code under
        # armed failpoints, which crash "the daemon") runs in the threads.
        custom = processor_factory is not default_processor or settings.processor
        in_threads = custom or failpoints.armed() or not settings.worker_processes
        self.procs = None if in_threads else WorkerProcesses(settings)
        self.handler = self._make_handler(settings)
        self.pool = WorkerPool(self)

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
        # The queue wakes a free worker itself. Waking the main loop too would run its round
        # (health snapshot, scans due) on every drop, in the millisecond the worker claims.
        self.queue.put(("inbox", name))

    def _on_hint(self) -> None:
        """A writer is busy with a temp name: scan the inbox soon, a few times."""
        self.schedule.hint()
        self.waker.wake()

    def _quick_scan_due(self) -> float:
        """Run a due quick scan; return seconds until the next one (inf when none)."""
        due, following = self.schedule.quick_scan_due()
        if due:
            for name in list_inbox(self.spool):
                if self.queue.put(("inbox", name)):
                    self.stats.add("hinted")
        return following

    # --- the pool's view of the daemon (flowdrop.daemon.worker.PoolHost) --------------------

    def defer(self, name: str, delay: float) -> None:
        """An inbox file is still being written: look again after ``delay`` seconds."""
        self.schedule.defer(name, delay)
        self.waker.wake()

    def back_off(self, item: tuple[str, str]) -> None:
        """A file whose handling raised: retry it only after a reconcile interval."""
        self.schedule.back_off(("work", item[1]), self.settings.reconcile_interval)

    # --- setup -----------------------------------------------------------------------------

    def _make_handler(self, settings: Settings) -> RequestHandler:
        processor = (
            self.processor_factory(settings)
            if self.procs is None
            else self.procs.processor(settings.request_timeout)
        )
        return make_handler(
            settings, self.spool, processor, self.stats, lambda: self.stop_requested
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
        sweep_debris(self.spool, self.settings)

    def _arm(self) -> None:
        self._mode = choose_mode(self.settings.watch, self.spool.inbox)
        if self._mode is WatchMode.INOTIFY:
            watcher = InboxWatcher(
                self.spool.inbox, self._on_event, self._on_hint, self._on_overflow
            )
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
            if not self.queue.busy(item) and not self.schedule.in_backoff(item):
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
        procs = self.procs.stats() if self.procs is not None else WorkerStats()
        return HealthSnapshot(
            instance=self.settings.instance,
            pid=os.getpid(),
            watch_mode=self._mode.value,
            observer_alive=self.observer_alive,
            healthy=self.healthy(),
            started_at=self._started_at,
            last_scan_at=self._last_scan_wall,
            last_scan_age_seconds=age,
            queue_depth=len(self.queue) + self.schedule.deferred,
            running=self.pool.running,
            workers=self.pool.size,
            draining=self.stop_requested,
            counters=counts,
            observer_restarts=self._watcher.restarts if self._watcher else 0,
            overflows=self._overflow.count,
            worker_processes=procs.alive,
            worker_processes_replaced=procs.replaced,
            timeouts=procs.timeouts,
            compile_cache=(
                self.procs.cache_stats() if self.procs else compilecache.shared_cache().stats()
            ),
        )

    def _report(self, force: bool = False) -> None:
        _, durations = self.stats.snapshot()
        self.reporter.report(
            self.snapshot(), durations, self.settings, ready=self.ready.is_set(), force=force
        )

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
        self.handler = handler
        self.pool.resize(new.workers)
        self.status_page.apply(new.status_page)
        if self.procs is not None:
            self.procs.resize(new.workers, new)
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
        due, soonest = self.schedule.due_deferred()
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
        return not self.schedule.deferred and len(self.queue) == 0 and self.pool.running == 0

    def run(self) -> int:
        """Serve until stopped (or, with ``once``, until the inbox is drained). Exit code."""
        self._prepare()
        try:
            self._arm()
            if self.procs is not None:
                self.procs.start(self.settings.workers)
            self.pool.start()
            self.status_page.apply(self.settings.status_page)
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
            self.on_ready()
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
            self.status_page.stop()
            self._disarm()
            if self.procs is not None:
                self.procs.close()
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
            self.handler.mark_interrupted()
        self._report(force=True)
        log.info("daemon_stopped", drained=drained)
        return 0
