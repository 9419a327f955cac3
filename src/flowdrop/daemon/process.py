"""Handling one claimed request file: parse, deduplicate, run, report, file away.

The order of steps follows "make the durable record before you destroy the source", in batches
of writes (:mod:`flowdrop.daemon.requestrecord`; docs/architecture.md, "Durability"):

1. the start batch's files are written — ``accepted`` status (a new submission), the ledger
   entry with the attempt counted, the ``running`` status — and the request goes to the
   processor: a worker process starts on it at once;
2. meanwhile the start batch's data (the request file's own bytes with it) is synced and its
   files renamed into place;
3. ``running`` statuses from the processor's progress callback (each on its own);
4. the end batch, durable: the result (failpoints ``result_before_rename`` and ``after_result``
   around its rename), the terminal status, the ledger's terminal state;
5. the request file moves to ``done/`` (failpoint ``before_done_move`` just before).

A crash anywhere leaves the file in ``work/``; resuming it first looks for a result already
written by the crashed attempt (then it only finishes steps 4-5), and otherwise re-runs it until
``max_attempts`` attempts have been counted, after which it fails with ``interrupted``. A crash
between steps 1 and 2 leaves no attempt counted: the window is one batch's sync, shorter than
any request that could crash the daemon.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from flowdrop.core.contract import Phase, RunRequest, RunResult, State
from flowdrop.core.errors import ErrorCode, FlowdropError
from flowdrop.core.fs.failpoints import failpoint
from flowdrop.core.orchestration.results import error_result
from flowdrop.daemon.config import Settings
from flowdrop.daemon.intake import read_claimed
from flowdrop.daemon.ledger import Entry, Ledger, request_lock
from flowdrop.daemon.outbox import Outbox
from flowdrop.daemon.processor import Pending, Processor, submit
from flowdrop.daemon.requestrecord import RequestRecord
from flowdrop.daemon.runguard import runs_in_use
from flowdrop.daemon.spool import (
    Scrubber,
    Spool,
    file_away,
    quarantine,
)
from flowdrop.daemon.stats import Stats
from flowdrop.daemon.workerlost import WorkerLost

log = structlog.get_logger("flowdrop.daemon")


def _no_progress(_phase: Phase, _message: str) -> None:
    return None


def make_handler(
    settings: Settings,
    spool: Spool,
    processor: Processor,
    stats: Stats,
    should_stop: Callable[[], bool],
) -> RequestHandler:
    """The handler for ``settings``: limits, the path scrubber of every root, ``processor``."""
    scrub = Scrubber(
        {
            "spool": settings.spool,
            "runs": settings.runs_root,
            "telemetry": settings.telemetry_root,
            **{f"templates{i}": path for i, path in enumerate(settings.templates)},
        }
    )
    limits = Limits(settings.max_request_bytes, settings.max_attempts)
    return RequestHandler(
        spool,
        processor,
        limits,
        scrub=scrub,
        stats=stats,
        should_stop=should_stop,
        roots=(settings.runs_root, settings.telemetry_root),
    )


@dataclass(frozen=True)
class Limits:
    max_request_bytes: int
    max_attempts: int


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
        roots: tuple[Path, ...] = (),
    ) -> None:
        self.spool = spool
        self.processor = processor
        self.limits = limits
        self.scrub = scrub
        self.outbox = Outbox(spool, scrub)
        self.ledger = Ledger(spool)
        self.record = RequestRecord(spool, self.outbox, self.ledger, scrub, roots)
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
        intake = read_claimed(path, self.limits.max_request_bytes)
        if intake is None:
            return "gone"
        if intake.error is not None:
            return self._reject(path, intake.error, intake.request_id, started)
        assert intake.request is not None and intake.request_id is not None
        return self._accept(path, intake.request, intake.request_id, intake.digest, started)

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
            self.record.reject(path, request_id, error)
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
                file_away(path, self.spool.done)
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
                    return self._complete(
                        path, request_id, entry, finished, started, with_result=False
                    )
                if entry.attempts >= self.limits.max_attempts:
                    msg = (
                        f"The request was interrupted {entry.attempts} times (daemon stopped "
                        "or crashed while running it); giving up."
                    )
                    error = FlowdropError(ErrorCode.INTERRUPTED, msg, attempts=entry.attempts)
                    result = RunResult.from_error(request_id, error)
                    return self._complete(
                        path, request_id, entry, result, started, with_result=True
                    )
                attempts = entry.attempts + 1
                self.stats.add("recovered")
                log.warning(
                    "request_resumed",
                    requestId=request_id,
                    attempt=attempts,
                    maxAttempts=self.limits.max_attempts,
                )
            # While it runs, `flowdrop prune` leaves the runs of its template alone (runguard.py).
            with runs_in_use(self.spool, request.template_id):
                # A worker process starts on the request once the start batch's files are
                # written (a full disk stops it before it runs) and works while they are
                # synced. Nothing the request shows depends on the order: its answer is read
                # after the batch.
                handed: list[Pending] = []
                try:
                    entry = self.record.start(
                        path,
                        request_id,
                        digest,
                        attempts=attempts,
                        max_attempts=self.limits.max_attempts,
                        staged=lambda: handed.append(submit(self.processor, request, request_id)),
                    )
                    failpoint("after_running_status")
                except BaseException:
                    for pending in handed:  # never leave a worker lent out
                        with contextlib.suppress(Exception):
                            pending.result(_no_progress)
                    raise
                (pending,) = handed
                with self._running_lock:
                    self.running[request_id] = path.name
                try:
                    result = self._run(pending, request_id)
                finally:
                    with self._running_lock:
                        self.running.pop(request_id, None)
            return self._complete(path, request_id, entry, result, started, with_result=True)

    def _run(self, pending: Pending, request_id: str) -> RunResult:
        shown = [Phase.VALIDATING]  # the running status of the start batch

        def progress(phase: Phase, message: str) -> None:
            # A report of the phase already shown adds a message, not a state: not worth a
            # status write (an fsync) on every request's path.
            if Phase(phase) is shown[-1]:
                return
            shown.append(Phase(phase))
            try:
                self.outbox.write_status(
                    request_id, "running", phase=Phase(phase).value, message=message
                )
            except (FlowdropError, ValueError) as exc:
                log.warning("status_write_failed", requestId=request_id, error=str(exc))

        try:
            result = pending.result(progress)
        except WorkerLost:
            raise  # like a crash of the daemon: the file stays in work/ and is resumed
        except Exception as exc:
            if not isinstance(exc, FlowdropError):
                log.exception("processor_crashed", requestId=request_id)
            result = error_result(request_id, exc)
        if result.request_id != request_id:
            result = result.model_copy(update={"request_id": request_id})
        return result

    def _complete(
        self,
        path: Path,
        request_id: str,
        entry: Entry,
        result: RunResult,
        started: float,
        *,
        with_result: bool,
    ) -> str:
        """Commit the end batch (``with_result``: the result too), then file the request away."""
        try:
            self.record.end(request_id, entry, result, with_result=with_result)
        except FlowdropError as exc:
            if not with_result or self.outbox.read_result(request_id) is not None:
                raise  # stays in work/: the next attempt finishes what is missing
            # Try once to record the storage error instead; a second failure propagates.
            log.error("result_write_failed", requestId=request_id, error=exc.message)
            result = RunResult.from_error(request_id, exc)
            self.record.end(request_id, entry, result, with_result=True)
        failpoint("before_done_move")
        file_away(path, self.spool.done)
        self._finished(
            path.name,
            request_id,
            State(result.state).value,
            started,
            code=result.error.code if result.error else None,
            result=result,
            attempts=entry.attempts,
        )
        return State(result.state).value

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
        if request_id is not None:
            self.outbox.forget(request_id)
