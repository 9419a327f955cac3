"""``flowdrop report`` and ``flowdrop parity``: the command-line faces of core/report."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TextIO

from flowdrop.core.errors import ErrorCode, FlowdropError
from flowdrop.core.fs.sandbox import check_id
from flowdrop.daemon.config import Settings


def locate_run(run: str, settings: Settings) -> Path:
    """RUN is a run directory, else a run id under the configured runs root."""
    as_path = Path(run)
    if (as_path / "run.json").is_file():
        return as_path
    run_id = check_id(run, "run")
    candidate = settings.runs_root / run_id
    if not (candidate / "run.json").is_file():
        msg = (
            f"'{run}' is neither a run directory nor a run id under the runs root "
            f"({settings.runs_root})."
        )
        raise FlowdropError(ErrorCode.STORAGE_ERROR, msg, run=run_id)
    return candidate


def report_command(
    run: str, settings: Settings, out: Path | None, stdout: TextIO | None = None
) -> int:
    from flowdrop.core import report

    report.require()
    run_dir = locate_run(run, settings)
    target = out or Path.cwd() / f"{run_dir.name}.html"
    inside = run_dir.resolve().parent == settings.runs_root.resolve()
    report.write_report(
        run_dir,
        target,
        runs_root=settings.runs_root if inside else None,
        telemetry_root=settings.telemetry_root,
    )
    size = target.stat().st_size / 1_048_576
    (stdout or sys.stdout).write(
        f"report written to {target} ({size:.1f} MB); open it in a browser: file://{target.resolve()}\n"
    )
    return 0
