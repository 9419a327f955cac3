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
