"""Run reports: one self-contained HTML file per run (``flowdrop report``, ``options.report``).

The plotting library is optional (the ``report`` extra) and imported only here, lazily, so
nothing else in flowdrop pays for it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flowdrop import __version__
from flowdrop.core.engine.runreader import RunData, read_run
from flowdrop.core.report import plotting
from flowdrop.core.report.layout import bin_minutes, build_layout
from flowdrop.core.report.overlay import (
    Overlay,
    build_overlay,
    find_bundle,
    read_json,
    source_run_id,
)
from flowdrop.core.report.page import Page, render, table

__all__ = ["REPORT_FILE", "build_report", "require", "with_report", "write_report"]

REPORT_FILE = "report.html"
require = plotting.require


def _facts(run: RunData, now: datetime) -> list[tuple[str, str]]:
    prov = run.provenance or {}
    meta = run.metadata
    grid = run.run.get("grid") or {}
    start = (
        (run.model.get("grid") or {}).get("start")
        if isinstance(run.model.get("grid"), dict)
        else None
    )
    rng = run.manifest.get("rng") if isinstance(run.manifest.get("rng"), dict) else {}
    params = prov.get("parameters", meta.get("parameters")) or {}
    return [
        (
            "template",
            f"{prov.get('templateId') or meta.get('templateId')} {prov.get('templateVersion') or meta.get('templateVersion')}",
        ),
        ("mode", str(prov.get("mode") or meta.get("mode"))),
        ("run id", run.run_id),
        (
            "grid",
            f"{grid.get('bins')} bins × {grid.get('binSize')} {grid.get('binUnit')} ({bin_minutes(run):g} min), from {start or 'bin 0'}",
        ),
        ("parameters", json.dumps(params, sort_keys=True) if params else "template defaults"),
        ("seed", f"{(rng or {}).get('kind', '')} {(rng or {}).get('seed')}".strip()),
        ("input hash", str(run.run.get("inputHash"))),
        ("model hash", str(run.run.get("modelHash"))),
        ("scenario hash", str(run.run.get("scenarioHash"))),
        ("class coverage", str(run.run.get("classCoverage"))),
        (
            "made",
            f"{run.run.get('createdUtc')} by engine {run.run.get('engineVersion')} ({prov.get('generator') or meta.get('generator')})",
        ),
        ("report", f"{now:%Y-%m-%dT%H:%M:%SZ} by flowdrop {__version__}; {len(run.series)} series"),
    ]


def _warnings(run: RunData) -> str:
    warnings = [w for w in run.run.get("warnings") or [] if isinstance(w, dict)]
    if not warnings:
        return "<h3>Warnings</h3><p>None.</p>"
    rows = []
    for w in warnings:
        bins = w.get("bins") or []
        shown = ", ".join(str(b) for b in bins[:12]) + (
            f" … ({len(bins)} bins)" if len(bins) > 12 else ""
        )
        node = w.get("nodeId") or ", ".join(str(n) for n in w.get("nodeIds") or [])
        rows.append([str(w.get("code")), str(w.get("message")), node, shown])
    return f"<h3>Warnings ({len(rows)})</h3>" + table(("code", "message", "node", "bins"), rows)


def build_report(
    run_dir: Path,
    *,
    runs_root: Path | None = None,
    telemetry_root: Path | None = None,
    source_dir: Path | None = None,
    bundle: dict[str, Any] | None = None,
    bundle_dir: Path | None = None,
    now: datetime | None = None,
) -> str:
    """The HTML report of the run in ``run_dir``.

    For a telemetry run the source simulation run is ``source_dir``, else looked up by id in
    ``runs_root`` (default: the run's parent); ``bundle.json`` is ``bundle``, else read from
    ``bundle_dir``, else looked up under ``telemetry_root``.
    """
    js = plotting.plotly_js()  # fail before reading anything when the extra is missing
    run = read_run(run_dir)
    moment = now or datetime.now(UTC)
    layout = build_layout(run)
    prov = run.provenance or {}
    # Simulation runs carry model/telemetry too (their own capture bindings): only a telemetry
    # run was replayed from a bundle.
    telemetry = str(prov.get("mode") or run.metadata.get("mode")) == "telemetry"
    source_id = source_run_id(run_dir) if telemetry else None
    source = None
    if source_id is not None:
        candidate = source_dir or (runs_root or run_dir.parent) / source_id
        if (candidate / "run.json").is_file() and candidate.resolve() != run_dir.resolve():
            source = read_run(candidate)
        if bundle is None and bundle_dir is not None:
            bundle = read_json(bundle_dir / "bundle.json")
        if bundle is None and telemetry_root is not None:
            bundle = find_bundle(telemetry_root, source_id)
    overlay = build_overlay(run, source, bundle) if telemetry else Overlay()
    title = str(
        prov.get("templateTitle")
        or run.metadata.get("templateTitle")
        or prov.get("templateId")
        or run.run_id
    )
    page = Page(
        title=title,
        subtitle=f"flowdrop run report — {run.run_id}",
        facts=_facts(run, moment),
        grid={**(run.run.get("grid") or {}), "start": (run.model.get("grid") or {}).get("start")},
        charts=[*overlay.charts, *layout.charts],
        values={**layout.values, **overlay.values},
        tables=[("header", _warnings(run)), *(("telemetry", t) for t in overlay.tables)],
    )
    return render(page, js)


def write_report(run_dir: Path, out: Path, **options: Any) -> Path:
    """Write the report of ``run_dir`` to ``out`` atomically (temporary name, then rename)."""
    text = build_report(run_dir, **options)
    out.parent.mkdir(parents=True, exist_ok=True)
    temporary = out.with_name(f".tmp-{out.name}.{os.getpid()}")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, out)
    return out


def with_report(writer: Callable[[Path], Any], **options: Any) -> Callable[[Path], Any]:
    """``writer`` followed by ``report.html`` written into the same (staging) run directory, so
    the report is published with the run and the run is never modified afterwards."""

    def write(out_dir: Path) -> Any:
        written = writer(out_dir)
        write_report(out_dir, out_dir / REPORT_FILE, **options)
        return written

    return write
