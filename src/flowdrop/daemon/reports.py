"""``flowdrop report`` and ``flowdrop parity``: the command-line faces of core/report."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any, TextIO

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


def parity_command(
    template_id: str,
    params: dict[str, Any],
    seed: int | None,
    settings: Settings,
    report_out: Path | None,
    stdout: TextIO | None = None,
) -> int:
    """Simulate -> capture -> replay -> compare in a temporary directory; 0 when parity holds."""
    from flowdrop.core import engine
    from flowdrop.core.report.parity import format_table, run_parity

    out = stdout or sys.stdout
    if report_out is not None:
        from flowdrop.core import report

        report.require()  # before minutes of work, not after
    template = engine.load_template(engine.find_template(template_id, settings.templates))
    with tempfile.TemporaryDirectory(prefix="flowdrop-parity-") as work:
        result = run_parity(template, params, Path(work), seed=seed)
        out.write(format_table(result))
        if report_out is not None:
            from flowdrop.core import report

            report.write_report(
                result.replay_dir,
                report_out,
                source_dir=result.source_dir,
                bundle=result.bundle,
            )
            out.write(f"report written to {report_out}\n")
    return 0 if result.ok else 1
