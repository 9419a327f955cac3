"""``options.report``: the run's ``report.html``, written into the staging directory before the
run is published (a published run is never modified), and named in the result as ``run.report``.

core/report (and the plotting library) is imported only when a request asks for a report, so
requests that do not pay nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from flowdrop.core.contract import Mode, RunResult, RunWarning
from flowdrop.core.orchestration.request import ValidatedRequest

REPORT_FILE = "report.html"
Writer = Callable[[Path], Any]


def require_report(req: ValidatedRequest) -> None:
    """Fail with ``report_unavailable`` before any work when the report extra is missing."""
    if req.options.report:
        from flowdrop.core import report

        report.require()


def reported(
    req: ValidatedRequest, writer: Writer, mode: Mode, *, bundle_dir: Path | None = None
) -> Writer:
    """``writer`` plus the report, for the run the request asked for (not a source run)."""
    if not req.options.report or mode is not req.mode:
        return writer
    from flowdrop.core import report

    return report.with_report(writer, runs_root=req.runs_root, bundle_dir=bundle_dir, now=req.now)


def name_report(req: ValidatedRequest, result: RunResult) -> RunResult:
    """``run.report`` when the published run has a report; a warning when a reused run has none."""
    run = result.run
    if not req.options.report or run is None:
        return result
    if (req.store.path(run.run_id) / REPORT_FILE).is_file():
        update: dict[str, Any] = {"report": f"{run.path}/{REPORT_FILE}"}
    else:
        warning = RunWarning(
            code="report_not_written",
            message=(
                f"Run '{run.run_id}' was reused and was published without {REPORT_FILE}; a "
                f"published run is never modified. Write one elsewhere with "
                f"'flowdrop report {run.run_id} --out FILE', or set options.overwriteExisting."
            ),
        )
        update = {"warnings": [*run.warnings, warning]}
    return result.model_copy(update={"run": run.model_copy(update=update)})
