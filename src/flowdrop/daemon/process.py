"""Handling one claimed request file: parse, deduplicate, run, report, file away.

The order of durable steps follows "make the durable record before you destroy the source":

1. ``accepted`` status (a new submission) and the ledger entry with the attempt counted;
2. ``running`` statuses from the processor's progress callback;
3. the result file (failpoint ``result_before_rename`` inside the atomic write);
4. the terminal status, then the ledger's terminal state;
5. the request file moves to ``done/`` (failpoint ``before_done_move`` just before).

A crash anywhere leaves the file in ``work/``; resuming it first looks for a result already
written by the crashed attempt (then it only finishes steps 4-5), and otherwise re-runs it until
``max_attempts`` attempts have been counted, after which it fails with ``interrupted``.
"""

from __future__ import annotations

import os
import stat
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from flowdrop.core.contract import Phase, RunRequest, RunResult, State, parse_request
from flowdrop.core.errors import ErrorCode, FlowdropError
from flowdrop.core.fs.failpoints import failpoint
from flowdrop.daemon.claim import read_limited
from flowdrop.daemon.ledger import Entry, Ledger, content_hash, request_lock
from flowdrop.daemon.spool import (
    Outbox,
    Scrubber,
    Spool,
    display_name,
    move_to,
    quarantine,
    valid_request_id,
)

log = structlog.get_logger("flowdrop.daemon")

ProgressCallback = Callable[[Phase, str], None]
Processor = Callable[[RunRequest, str, ProgressCallback], RunResult]


@dataclass
class Stats:
    """Thread-safe counters for health.json and metrics.prom."""

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


@dataclass(frozen=True)
class Limits:
    max_request_bytes: int
    max_attempts: int


def _stem(name: str) -> str:
    return name[: -len(".json")] if name.endswith(".json") else name


class RequestHandler:
    """Turns a claimed file into status/result files; safe to call from several threads."""

    def __init__(
        self,
        spool: Spool,
        processor: Processor,
        limits: Limits,
        *,
        scrub: Scrubber | None = None,
        stats: Stats | None = None,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> None:
        self.spool = spool
        self.processor = processor
        self.limits = limits
        self.scrub = scrub
        self.outbox = Outbox(spool, scrub)
        self.ledger = Ledger(spool)
        self.stats = stats or Stats()
        self.should_stop = should_stop
        self.running: dict[str, str] = {}  # requestId -> file name, while the processor runs
        self._running_lock = threading.Lock()

    def mark_interrupted(self) -> None:
        """Drain timed out: say so in the status of every request still running."""
        with self._running_lock:
            running = dict(self.running)
        for request_id in running:
            try:
                self.outbox.write_status(
                    request_id,
                    "running",
                    message="Interrupted: the daemon stopped before this request finished; "
                    "it will be resumed.",
                )
            except FlowdropError as exc:
                log.warning("status_write_failed", requestId=request_id, error=str(exc))

    # --- entry point -----------------------------------------------------------------------

    def handle(self, path: Path) -> str:
        """Process ``work/<instance>/<name>``; returns the outcome (for counters and tests)."""
        started = time.monotonic()
        name = display_name(path.name)  # for messages: file names may hold undecodable bytes
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            return "gone"
        stem = _stem(path.name)
        guess = stem if valid_request_id(stem) else None
        if not stat.S_ISREG(info.st_mode):
            kind = _kind(info.st_mode)
            msg = f"'{name}' is a {kind}, not a regular file; it was not followed or read."
            error = FlowdropError(ErrorCode.PATH_VIOLATION, msg, fileName=name, kind=kind)
            return self._reject(path, error, guess, started)
        if info.st_nlink > 1:
            # Another name for the same inode may live outside the spool (os.link needs no
            # read access to the target's directory): refuse it like a symlink, unread.
            msg = (
                f"'{name}' is a hard link ({info.st_nlink} links), not a file of its own; "
                "it was not read. Copy the request instead of linking it."
            )
            error = FlowdropError(
                ErrorCode.PATH_VIOLATION, msg, fileName=name, kind="hard link", links=info.st_nlink
            )
            return self._reject(path, error, guess, started)
        limit = self.limits.max_request_bytes
        if info.st_size > limit:
            return self._reject(path, _too_large(name, info.st_size, limit), guess, started)
        try:
            raw = read_limited(path, limit + 1)
        except OSError as exc:
            msg = f"Could not read '{name}': {exc.strerror or exc}."
            error = FlowdropError(ErrorCode.PATH_VIOLATION, msg, fileName=name)
            return self._reject(path, error, guess, started)
        if len(raw) > limit:
            return self._reject(path, _too_large(name, len(raw), limit), guess, started)
        try:
            request = parse_request(raw)
        except FlowdropError as exc:
            return self._reject(path, exc, guess, started)
        request_id = request.request_id or stem
        if not valid_request_id(request_id):
            msg = (
                f"The file name '{name}' is not a valid requestId and the request has no "
                "requestId field; add one ([A-Za-z0-9][A-Za-z0-9._-]{0,127})."
            )
            error = FlowdropError(ErrorCode.INVALID_REQUEST, msg, fileName=name)
            return self._reject(path, error, None, started)
        return self._accept(path, request, request_id, content_hash(raw), started)

    # --- rejection -------------------------------------------------------------------------

    def _reject(
        self, path: Path, error: FlowdropError, request_id: str | None, started: float
    ) -> str:
        if request_id is None:
            quarantine(self.spool, path, error.body(), request_id=None, scrub=self.scrub)
            self._finished(path.name, None, "rejected", started, code=error.code)
            return "rejected"
        with request_lock(self.spool, request_id, should_stop=self.should_stop) as held:
            if not held:
                return "postponed"
            entry = self.ledger.get(request_id)
            owns_outbox = entry is None or entry.state == "rejected"
            if owns_outbox:
                result = RunResult.from_error(request_id, error, state=State.REJECTED)
                self.outbox.write_status(request_id, "accepted", message="Received.", restart=True)
                self.outbox.write_result(result)
                self.outbox.write_status(
                    request_id, "rejected", message=f"{error.code.value}: {error.message}"
                )
                self.ledger.put(
                    Entry(
                        request_id,
                        "",
                        "rejected",
                        0,
                        display_name(path.name),
                        self.spool.instance,
                        "",
                    )
                )
            quarantine(self.spool, path, error.body(), request_id=request_id, scrub=self.scrub)
        self._finished(path.name, request_id, "rejected", started, code=error.code)
        return "rejected"

    # --- acceptance ------------------------------------------------------------------------

    def _accept(
        self, path: Path, request: RunRequest, request_id: str, digest: str, started: float
    ) -> str:
        with request_lock(self.spool, request_id, should_stop=self.should_stop) as held:
            if not held:
                return "postponed"  # stays in work/ and is resumed later
            entry = self.ledger.get(request_id)
            if entry is not None and entry.state != "rejected" and entry.sha256 != digest:
                return self._conflict(path, request_id, entry, started)
            if entry is not None and entry.sha256 == digest and entry.ended:
                move_to(path, self.spool.done)
                self.stats.add("duplicates")
                log.info(
                    "request_duplicate",
                    requestId=request_id,
                    file=path.name,
                    firstState=entry.state,
                )
                return "duplicate"
            resuming = entry is not None and entry.sha256 == digest and not entry.ended
            attempts = 1
            if resuming and entry is not None:
                finished = self.outbox.read_result(request_id)
                if finished is not None and finished.state in (State.SUCCEEDED, State.FAILED):
                    self.stats.add("recovered")
                    return self._complete(path, request_id, entry, finished, started)
                if entry.attempts >= self.limits.max_attempts:
                    msg = (
                        f"The request was interrupted {entry.attempts} times (daemon stopped "
                        "or crashed while running it); giving up."
                    )
                    error = FlowdropError(ErrorCode.INTERRUPTED, msg, attempts=entry.attempts)
                    result = RunResult.from_error(request_id, error)
                    self.outbox.write_result(result)
                    return self._complete(path, request_id, entry, result, started)
                attempts = entry.attempts + 1
                self.stats.add("recovered")
                log.warning(
                    "request_resumed",
                    requestId=request_id,
                    attempt=attempts,
                    maxAttempts=self.limits.max_attempts,
                )
            else:
                self.outbox.write_status(request_id, "accepted", message="Accepted.", restart=True)
            entry = self.ledger.put(
                Entry(
                    request_id,
                    digest,
                    "running",
                    attempts,
                    display_name(path.name),
                    self.spool.instance,
                    "",
                )
            )
            message = (
                "Starting."
                if attempts == 1
                else f"Resuming after an interruption (attempt {attempts} of "
                f"{self.limits.max_attempts})."
            )
            self.outbox.write_status(
                request_id, "running", phase=Phase.VALIDATING.value, message=message
            )
            failpoint("after_running_status")
            with self._running_lock:
                self.running[request_id] = path.name
            try:
                result = self._run(request, request_id)
            finally:
                with self._running_lock:
                    self.running.pop(request_id, None)
            result = self._publish(request_id, result)
            failpoint("after_result")
            return self._complete(path, request_id, entry, result, started)

    def _publish(self, request_id: str, result: RunResult) -> RunResult:
        """Write the result; if that fails, try once to record the storage error instead.

        A second failure propagates: the file stays in work/ and a later attempt retries.
        """
        try:
            self.outbox.write_result(result)
        except FlowdropError as exc:
            log.error("result_write_failed", requestId=request_id, error=exc.message)
            result = RunResult.from_error(request_id, exc)
            self.outbox.write_result(result)
        return result

    def _run(self, request: RunRequest, request_id: str) -> RunResult:
        def progress(phase: Phase, message: str) -> None:
            try:
                self.outbox.write_status(
                    request_id, "running", phase=Phase(phase).value, message=message
                )
            except (FlowdropError, ValueError) as exc:
                log.warning("status_write_failed", requestId=request_id, error=str(exc))

        try:
            result = self.processor(request, request_id, progress)
        except FlowdropError as exc:
            result = RunResult.from_error(request_id, exc)
        except Exception as exc:
            log.exception("processor_crashed", requestId=request_id)
            msg = f"Internal error while running the request ({type(exc).__name__}); see the daemon log."
            result = RunResult.from_error(request_id, FlowdropError(ErrorCode.INTERNAL_ERROR, msg))
        if result.request_id != request_id:
            result = result.model_copy(update={"request_id": request_id})
        return result

    def _complete(
        self, path: Path, request_id: str, entry: Entry, result: RunResult, started: float
    ) -> str:
        state = State(result.state)
        if result.error is not None:
            message = f"{result.error.code.value}: {result.error.message}"
        elif result.run is not None:
            message = f"Run {result.run.run_id} {'reused' if result.run.was_reused else 'written'}."
        else:
            message = "Done."
        current = self.outbox.read_status(request_id)
        if current is None or current.state != state:
            self.outbox.write_status(request_id, state.value, message=message)
        self.ledger.put(
            Entry(
                request_id,
                entry.sha256,
                state.value,
                entry.attempts,
                entry.file_name,
                self.spool.instance,
                "",
            )
        )
        failpoint("before_done_move")
        move_to(path, self.spool.done)
        self._finished(
            path.name,
            request_id,
            state.value,
            started,
            code=result.error.code if result.error else None,
            result=result,
            attempts=entry.attempts,
        )
        return state.value

    def _conflict(self, path: Path, request_id: str, entry: Entry, started: float) -> str:
        msg = (
            f"requestId '{request_id}' was already used for a request with other content "
            f"(state {entry.state}); use a new requestId."
        )
        error = FlowdropError(
            ErrorCode.REQUEST_CONFLICT, msg, requestId=request_id, existingState=entry.state
        )
        quarantine(self.spool, path, error.body(), request_id=request_id, scrub=self.scrub)
        self.stats.add("conflicts")
        self._finished(path.name, request_id, "conflict", started, code=error.code)
        return "conflict"

    def _finished(
        self,
        file_name: str,
        request_id: str | None,
        state: str,
        started: float,
        *,
        code: ErrorCode | None = None,
        result: RunResult | None = None,
        attempts: int | None = None,
    ) -> None:
        elapsed = time.monotonic() - started
        self.stats.add(state)
        self.stats.observe(elapsed)
        fields: dict[str, Any] = {
            "requestId": request_id,
            "file": file_name,
            "state": state,
            "code": code.value if code else None,
            "durationMs": round(elapsed * 1000, 1),
            "instance": self.spool.instance,
        }
        if attempts is not None:
            fields["attempts"] = attempts
        if result is not None and result.run is not None:
            fields.update(runId=result.run.run_id, templateId=result.run.template_id)
        if result is not None and result.capture is not None:
            fields.update(
                captureStatus=result.capture.status.value, captureKey=result.capture.capture_key
            )
        log.info("request_finished", **fields)


def _too_large(name: str, size: int, limit: int) -> FlowdropError:
    msg = f"'{name}' is larger than max_request_bytes ({size} > {limit} bytes); it was not parsed."
    return FlowdropError(ErrorCode.REQUEST_TOO_LARGE, msg, size=size, limit=limit)


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "symbolic link"
    if stat.S_ISDIR(mode):
        return "directory"
    if stat.S_ISFIFO(mode):
        return "FIFO"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    return "special file"
