"""Worker processes: the CPU-bound part of a request (the orchestrator) runs outside the daemon.

The daemon's worker threads keep everything about the spool — claiming, statuses, results, the
ledger — and hand each request's processor call to a child process: one request per child at a
time, progress relayed back over a pipe and written as statuses by the daemon. Children come
from a forkserver that imported ``flowdrop.core`` once, so a replacement starts in milliseconds,
and each keeps its own template and compile caches for its whole life.

A child that dies (SIGKILL, OOM, a crash in C) is replaced and its request raises
:class:`WorkerLost`: the handler leaves the file in ``work/`` and it is resumed under the usual
attempt rules (``max_attempts``, then ``interrupted``). A request still running after
``request_timeout`` seconds has its child killed and replaced and ends ``failed`` with
``timeout``; whatever the child had staged stays a ``.tmp-*`` directory (never published) and
is swept at a later start. ``worker_memory_limit`` caps each child's address space
(``RLIMIT_AS``).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

import structlog

from flowdrop.core.contract import Phase, RunRequest, RunResult
from flowdrop.core.engine.compilecache import CacheStats
from flowdrop.core.errors import ErrorCode, FlowdropError
from flowdrop.daemon.config import Settings
from flowdrop.daemon.processor import ProcessorFactory, ProgressCallback, default_processor
from flowdrop.daemon.workerlost import WorkerLost

log = structlog.get_logger("flowdrop.daemon")

PRELOAD = ["flowdrop.core.orchestration.orchestrator", "flowdrop.daemon.workerchild"]


@dataclass
class _Child:
    process: BaseProcess
    conn: Connection
    served: int = 0


@dataclass
class WorkerStats:
    alive: int = 0
    started: int = 0
    replaced: int = 0
    timeouts: int = 0
    pids: list[int] = field(default_factory=list)


class WorkerProcesses:
    """Child processes lent to the daemon's worker threads, one request at a time each."""

    def __init__(self, settings: Settings, factory: ProcessorFactory = default_processor) -> None:
        self.settings = settings
        self.factory = factory  # called in each child; module-level, so it pickles by name
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(PRELOAD)
        self._context = context
        self._idle: list[_Child] = []
        self._busy: set[int] = set()
        self._guard = threading.Lock()
        self._closed = False
        self._started = self._replaced = self._timeouts = 0
        self._cache: dict[int, CacheStats] = {}  # the last compile-cache counters per child

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self, count: int) -> None:
        """Start ``count`` idle children (the pool is warm before the first request)."""
        with self._guard:
            missing = count - len(self._idle) - len(self._busy)
        for _ in range(max(0, missing)):
            child = self._spawn()
            with self._guard:
                self._idle.append(child)

    def resize(self, count: int, settings: Settings) -> None:
        """Apply a reloaded configuration: new children get it, extra idle ones stop."""
        self.settings = settings
        with self._guard:
            stale, self._idle = self._idle, []
        for child in stale:
            _stop(child)
        self.start(count)

    def close(self) -> None:
        with self._guard:
            self._closed = True
            idle, self._idle = self._idle, []
        for child in idle:
            _stop(child)

    def cache_stats(self) -> CacheStats:
        """The compile caches of all children that ever answered, summed."""
        with self._guard:
            parts = list(self._cache.values())
        return CacheStats(
            hits=sum(p.hits for p in parts),
            misses=sum(p.misses for p in parts),
            evictions=sum(p.evictions for p in parts),
            entries=sum(p.entries for p in parts),
            size=self.settings.compile_cache_size,
        )

    def stats(self) -> WorkerStats:
        with self._guard:
            pids = [c.process.pid or 0 for c in self._idle]
            return WorkerStats(
                alive=len(self._idle) + len(self._busy),
                started=self._started,
                replaced=self._replaced,
                timeouts=self._timeouts,
                pids=pids,
            )

    # --- one request -------------------------------------------------------------------------

    def processor(self, timeout: float) -> ChildProcessor:
        """A processor (the daemon's ``Processor`` shape) running each request in a child."""
        return ChildProcessor(self, timeout)

    def run(
        self, request: RunRequest, request_id: str, progress: Any, *, timeout: float
    ) -> RunResult:
        """The processor's result for ``request``, computed in a child process."""
        return self.submit(request, request_id, timeout=timeout).result(progress)

    def submit(self, request: RunRequest, request_id: str, *, timeout: float) -> InFlight:
        """Hand ``request`` to an idle child now; its result is :meth:`InFlight.result`."""
        child = self._borrow()
        try:
            child.conn.send((request, request_id))
        except OSError:
            raise self._lost(child, request_id) from None
        except BaseException:
            with self._guard:
                self._busy.discard(id(child))
            raise
        return InFlight(self, child, request_id, timeout)

    def _finish(self, child: _Child, message: tuple[Any, ...]) -> RunResult:
        """The child's last message for a request: give it back, answer or raise."""
        kind, *payload = message
        child.served += 1
        self._give_back(child)
        if kind == "result":
            result: RunResult = payload[0]
            with self._guard:
                self._cache[child.process.pid or 0] = payload[1]
            return result
        if kind == "error":
            code, message_text, details = payload
            raise FlowdropError(ErrorCode(code), message_text, **details)
        msg = f"worker process: {payload[0]}"
        raise RuntimeError(msg)

    def _borrow(self) -> _Child:
        with self._guard:
            child = self._idle.pop() if self._idle else None
        while child is not None and not child.process.is_alive():
            self._note_replaced(child, "died while idle")
            with self._guard:
                child = self._idle.pop() if self._idle else None
        if child is None:
            child = self._spawn()
        with self._guard:
            self._busy.add(id(child))
        return child

    def _give_back(self, child: _Child) -> None:
        with self._guard:
            self._busy.discard(id(child))
            if not self._closed:
                self._idle.append(child)
                return
        _stop(child)

    def _spawn(self) -> _Child:
        from flowdrop.daemon.workerchild import serve

        parent, remote = self._context.Pipe()
        process = self._context.Process(
            target=serve,
            args=(remote, self.settings, self.factory),
            name="flowdrop-worker",
            daemon=True,
        )
        process.start()
        remote.close()
        with self._guard:
            self._started += 1
        log.info("worker_process_started", pid=process.pid)
        return _Child(process, parent)

    def _lost(self, child: _Child, request_id: str) -> WorkerLost:
        child.process.join(timeout=1)
        code = child.process.exitcode
        self._note_replaced(child, f"exit code {code}", request_id=request_id)
        return WorkerLost(f"worker process {child.process.pid} died (exit code {code})")

    def _timed_out(self, child: _Child, request_id: str, timeout: float) -> RunResult:
        _kill(child)
        with self._guard:
            self._timeouts += 1
        self._note_replaced(child, "request_timeout", request_id=request_id)
        msg = (
            f"The request ran longer than request_timeout ({timeout:g} s); its worker process "
            "was stopped and nothing it had staged was published."
        )
        error = FlowdropError(ErrorCode.TIMEOUT, msg, timeoutSeconds=timeout)
        return RunResult.from_error(request_id, error)

    def _note_replaced(self, child: _Child, reason: str, **fields: Any) -> None:
        with self._guard:
            self._replaced += 1
            self._busy.discard(id(child))
            closed = self._closed
        log.warning("worker_process_replaced", pid=child.process.pid, reason=reason, **fields)
        child.conn.close()
        if not closed:
            self.start(self.settings.workers)


class InFlight:
    """A request running in a child process since :meth:`WorkerProcesses.submit`."""

    def __init__(
        self, procs: WorkerProcesses, child: _Child, request_id: str, timeout: float
    ) -> None:
        self._procs = procs
        self._child = child
        self._request_id = request_id
        self._timeout = timeout
        self._deadline = time.monotonic() + timeout  # the limit counts from the hand-over

    def result(self, progress: ProgressCallback) -> RunResult:
        """Relay progress until the child answers (or dies, or runs past the deadline)."""
        procs, child = self._procs, self._child
        given_back = False
        try:
            while True:
                remaining = self._deadline - time.monotonic()
                if remaining <= 0:
                    return procs._timed_out(child, self._request_id, self._timeout)
                if not child.conn.poll(min(remaining, 0.5)):
                    if not child.process.is_alive():
                        raise procs._lost(child, self._request_id)
                    continue
                try:
                    message = child.conn.recv()
                except (EOFError, OSError):
                    raise procs._lost(child, self._request_id) from None
                if message[0] == "progress":
                    progress(Phase(message[1]), message[2])
                    continue
                given_back = True  # idle again: another thread may borrow it at once
                return procs._finish(child, message)
        finally:
            if not given_back:  # killed, lost, or progress raised: not lent out any more
                with procs._guard:
                    procs._busy.discard(id(child))


class ChildProcessor:
    """The processor of a :class:`WorkerProcesses`: ``submit`` starts, calling waits too."""

    def __init__(self, procs: WorkerProcesses, timeout: float) -> None:
        self._procs = procs
        self._timeout = timeout

    def submit(self, request: RunRequest, request_id: str) -> InFlight:
        return self._procs.submit(request, request_id, timeout=self._timeout)

    def __call__(self, request: RunRequest, request_id: str, progress: Any) -> RunResult:
        return self._procs.run(request, request_id, progress, timeout=self._timeout)


def _stop(child: _Child) -> None:
    """Ask an idle child to exit (EOF on its pipe), then make sure it did."""
    child.conn.close()
    child.process.join(timeout=2)
    if child.process.is_alive():
        _kill(child)


def _kill(child: _Child) -> None:
    pid = child.process.pid
    if pid is not None and child.process.is_alive():
        os.kill(pid, signal.SIGKILL)
    child.process.join(timeout=5)
