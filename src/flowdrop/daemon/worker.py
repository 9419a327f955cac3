"""The work queue and the worker pool.

Queue items are ``("inbox", name)`` — claim it first — or ``("work", name)`` — already claimed
(recovered or left over). A worker claims a file only when it is free, so an instance never
holds more claimed files than it has workers and other instances sharing the spool get the
rest. The queue is deduplicated: a name that is queued or being handled is not queued again.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from pathlib import Path
from typing import Protocol

import structlog

from flowdrop.daemon.claim import Decision, claim
from flowdrop.daemon.config import Settings
from flowdrop.daemon.process import RequestHandler
from flowdrop.daemon.spool import Spool
from flowdrop.daemon.waker import Waker

log = structlog.get_logger("flowdrop.daemon")

Item = tuple[str, str]
DEFER_DELAY = 0.2


class WorkQueue:
    def __init__(self) -> None:
        self._items: deque[Item] = deque()
        self._known: set[Item] = set()  # queued or in progress
        self._cond = threading.Condition()
        self._closed = False

    def put(self, item: Item) -> bool:
        with self._cond:
            if item in self._known or self._closed:
                return False
            self._known.add(item)
            self._items.append(item)
            self._cond.notify()
            return True

    def get(self, timeout: float) -> Item | None:
        with self._cond:
            if not self._items and not self._closed:
                self._cond.wait(timeout)
            if self._closed or not self._items:
                return None
            return self._items.popleft()

    def mark(self, item: Item) -> None:
        """Track an item handled without being queued (a claimed inbox file)."""
        with self._cond:
            self._known.add(item)

    def done(self, item: Item) -> None:
        with self._cond:
            self._known.discard(item)

    def busy(self, item: Item) -> bool:
        with self._cond:
            return item in self._known

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)


class PoolHost(Protocol):
    """The one view of the daemon a pool needs: its settings, handler, spool and queue."""

    @property
    def settings(self) -> Settings: ...
    @property
    def handler(self) -> RequestHandler: ...
    @property
    def spool(self) -> Spool: ...
    @property
    def queue(self) -> WorkQueue: ...
    @property
    def waker(self) -> Waker: ...

    def defer(self, name: str, delay: float) -> None: ...
    def back_off(self, item: Item) -> None: ...


class WorkerPool:
    """``settings.workers`` threads taking items while the daemon is not draining."""

    def __init__(self, host: PoolHost) -> None:
        self.host = host
        self._threads: list[threading.Thread] = []
        self._size = host.settings.workers
        self._stop_taking = threading.Event()
        self._running = 0
        self._lock = threading.Lock()

    @property
    def running(self) -> int:
        with self._lock:
            return self._running

    @property
    def size(self) -> int:
        return self._size

    def start(self) -> None:
        self.resize(self._size)

    def resize(self, size: int) -> None:
        self._size = size
        alive = [t for t in self._threads if t.is_alive()]
        self._threads = alive
        for index in range(len(alive), size):
            thread = threading.Thread(
                target=self._loop, args=(index,), name=f"flowdrop-worker-{index}", daemon=True
            )
            self._threads.append(thread)
            thread.start()

    def stop_taking(self) -> None:
        self._stop_taking.set()

    def join(self, timeout: float) -> bool:
        """Wait for running items; True when none is left."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.running == 0:
                return True
            time.sleep(0.02)
        return self.running == 0

    def _loop(self, index: int) -> None:
        while not self._stop_taking.is_set():
            if index >= self._size:
                return  # shrunk by a reload
            item = self.host.queue.get(timeout=0.5)
            if item is None:
                continue
            if self._stop_taking.is_set():
                self.host.queue.done(item)
                return
            with self._lock:
                self._running += 1
            try:
                self._work(item)
            except Exception:
                log.exception("worker_error", item=list(item))
                self.host.back_off(item)
            finally:
                with self._lock:
                    self._running -= 1
                self.host.queue.done(item)
                self.host.waker.wake()

    def _work(self, item: Item) -> None:
        kind, name = item
        if kind == "work":
            self.host.handler.handle(self.host.spool.work / name)
            return
        settings = self.host.settings
        outcome = claim(
            self.host.spool,
            name,
            max_bytes=settings.max_request_bytes,
            stale_after=settings.stale_after,
        )
        if outcome.decision is Decision.DEFERRED:
            self.host.defer(name, DEFER_DELAY)
            return
        if outcome.decision is Decision.CLAIMED and outcome.path is not None:
            work_item = ("work", name)
            self.host.queue.mark(work_item)
            try:
                self.host.handler.handle(Path(outcome.path))
            except Exception:
                self.host.back_off(work_item)
                raise
            finally:
                self.host.queue.done(work_item)
