"""Result assembly: a finished request's run and capture summaries as a :class:`RunResult`."""

from __future__ import annotations

from flowdrop.core.contract import (
    CaptureStatus,
    CaptureSummary,
    RunResult,
    RunSummary,
    RunWarning,
    State,
)
from flowdrop.core.errors import ErrorCode, FlowdropError
from flowdrop.core.telemetry.manifest import CaptureWarning


def run_warning(w: CaptureWarning) -> RunWarning:
    """A capture or replay warning as the result reports it."""
    return RunWarning(
        code=w.code,
        message=w.message,
        severity=w.severity,
        node_id=w.node_id,
        bins=list(w.bins) if w.bins is not None else None,
    )


def succeeded(request_id: str, run: RunSummary, capture: CaptureSummary) -> RunResult:
    """The success result: the run, the capture summary and its warnings."""
    return RunResult(
        request_id=request_id,
        state=State.SUCCEEDED,
        run=run,
        capture=capture,
        capture_generated=capture.status is CaptureStatus.GENERATED,
        capture_warnings=list(capture.warnings),
    )


def error_result(request_id: str, exc: BaseException) -> RunResult:
    """The failed result for an exception: the one place errors become results.

    A :class:`FlowdropError` keeps its code; an I/O error the lower layers did not word is
    ``storage_error`` (never claiming success, never showing a path); anything else is a bug,
    ``internal_error``, whose details stay in the log.
    """
    if isinstance(exc, FlowdropError):
        return RunResult.from_error(request_id, exc)
    if isinstance(exc, OSError):
        msg = f"Storage error: {exc.strerror or exc.__class__.__name__}."
        return RunResult.from_error(
            request_id, FlowdropError(ErrorCode.STORAGE_ERROR, msg, errno=exc.errno)
        )
    msg = f"Internal error while running the request ({type(exc).__name__}); see the daemon log."
    return RunResult.from_error(request_id, FlowdropError(ErrorCode.INTERNAL_ERROR, msg))
