"""A telemetry run's provenance and, when its source simulation run is at hand, capture vs
replay: the source run's values overlaid on the replay's, with the largest differences."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flowdrop.core.engine.runreader import RunData
from flowdrop.core.numerics import FloatArray
from flowdrop.core.report.compare import RELATIVE_TOLERANCE, compare_series, format_number
from flowdrop.core.report.layout import FLOW_FIELDS, QUEUE_FIELDS, Chart, Row, Trace, node_fields
from flowdrop.core.report.page import table

MANIFEST = Path("model") / "telemetry" / "telemetry-manifest.json"
SHOWN_OPEN = 25  # longer difference tables start folded


@dataclass
class Overlay:
    tables: list[str] = field(default_factory=list)
    charts: list[Chart] = field(default_factory=list)
    values: dict[str, FloatArray] = field(default_factory=dict)


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def capture_manifest(run_dir: Path) -> dict[str, Any] | None:
    return read_json(run_dir / MANIFEST)


def source_run_id(run_dir: Path) -> str | None:
    manifest = capture_manifest(run_dir) or {}
    provenance = manifest.get("provenance") if isinstance(manifest.get("provenance"), dict) else {}
    run_id = (provenance or {}).get("runId")
    return str(run_id) if run_id else None


def find_bundle(telemetry_root: Path, source_id: str) -> dict[str, Any] | None:
    """The ``bundle.json`` under ``telemetry_root`` that was captured from ``source_id``."""
    try:
        candidates = sorted(telemetry_root.glob("*/bundle.json"))
    except OSError:
        return None
    for path in candidates:
        info = read_json(path)
        if info and info.get("sourceRunId") == source_id:
            return info
    return None


def _provenance_rows(manifest: dict[str, Any], bundle: dict[str, Any] | None) -> list[list[str]]:
    rows: list[list[str]] = []
    for key, value in (bundle or {}).items():
        rows.append(
            [f"bundle.json {key}", json.dumps(value) if not isinstance(value, str) else value]
        )
    provenance = manifest.get("provenance") if isinstance(manifest.get("provenance"), dict) else {}
    for key, value in (provenance or {}).items():
        rows.append([f"capture {key}", str(value)])
    files = manifest.get("files") if isinstance(manifest.get("files"), list) else []
    rows.append(["captured files", str(len(files or []))])
    rows.append(["class coverage", str(manifest.get("classCoverage"))])
    if bundle is None:
        rows.append(["bundle.json", "not found (give --config with the telemetry root)"])
    return rows


def build_overlay(run: RunData, source: RunData | None, bundle: dict[str, Any] | None) -> Overlay:
    overlay = Overlay()
    manifest = capture_manifest(run.path)
    if manifest is None:
        return overlay
    overlay.tables.append(
        "<h3>Bundle provenance</h3>" + table(("", ""), _provenance_rows(manifest, bundle))
    )
    if source is None:
        overlay.tables.append(
            '<p class="sub">The source simulation run is not in the runs root: no overlay.</p>'
        )
        return overlay
    order = [str(e.get("id")) for e in run.entries]
    diffs = sorted(compare_series(source.series, run.series, order), key=lambda d: -d.max_rel)
    differing = [d for d in diffs if not d.agrees]
    summary = (
        f"{len(diffs)} series compared with source run {source.run_id}: "
        f"{len(differing)} differ by more than {RELATIVE_TOLERANCE:g} relative."
    )
    rows = [
        [d.series_id, d.kind, d.bins, format_number(d.max_abs), format_number(d.max_rel)]
        for d in diffs
    ]
    body = table(
        ("series", "kind", "bins", "max abs diff", "max rel diff"),
        rows,
        (not d.agrees for d in diffs),
    )
    opened = " open" if len(rows) <= SHOWN_OPEN or differing else ""
    overlay.tables.append(
        f'<h3>Capture vs replay</h3><p><span class="pill{" bad" if differing else ""}">{summary}</span></p>'
        f"<details{opened}><summary>Largest differences per series</summary>{body}</details>"
    )
    for node_id, found in node_fields(run):
        traces: list[Trace] = []
        for name in (*FLOW_FIELDS, *QUEUE_FIELDS):
            sid = found.get(name)
            if sid is None or sid not in source.series:
                continue
            overlay.values[f"source:{sid}"] = source.series[sid]
            traces.append(Trace(f"source:{sid}", f"{name} (capture)", "dash"))
            traces.append(Trace(sid, f"{name} (replay)"))
        if traces:
            overlay.charts.append(
                Chart("telemetry", f"{node_id}: capture vs replay", [Row("entities/bin", traces)])
            )
    return overlay
