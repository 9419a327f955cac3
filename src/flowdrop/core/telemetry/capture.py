"""Telemetry capture: a canonical run directory in, a FlowTime telemetry bundle out.

A faithful port of FlowTime's ``TelemetryCapture`` + ``RunArtifactReader`` + ``GapInjector`` +
``CaptureManifestWriter`` (orchestration ref §4): which series are captured and under which file
names, the ``bin_index,classId,value`` CSVs with .NET "G17" numbers, gap and NaN handling with
their warning codes, and the schema-v2 ``manifest.json`` with a SHA-256 per file.

This module is the pipeline and the reading of the source run; which series are captured and
their file names are in :mod:`flowdrop.core.telemetry.bindings`, the CSVs and gap handling in
:mod:`flowdrop.core.telemetry.seriescsv`, the manifest and ``CaptureWarning`` in
:mod:`flowdrop.core.telemetry.manifest` (all re-exported here). It only writes into the directory
it is given; publishing a bundle (staging directory, one rename, ``bundle.json``) is
:mod:`flowdrop.core.telemetry.bundle`'s job. It reads the run's files directly rather than through the
engine so that it works on any canonical run, including the hand-built fixtures of the tests
(upstream ``TelemetryRunFactory``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from flowdrop.core.errors import ErrorCode, FlowdropError
from flowdrop.core.hashing import dotnet_json, sha256_bytes
from flowdrop.core.telemetry.bindings import DEFAULT_CLASS, METRICS, CapturedFile, derive_bindings
from flowdrop.core.telemetry.manifest import CaptureWarning, build_manifest
from flowdrop.core.telemetry.seriescsv import (
    CSV_HEADER,
    GapHandling,
    GapOptions,
    capture_failed,
    process_gaps,
    read_series_csv,
    render_csv,
)

__all__ = [
    "CSV_HEADER",
    "DEFAULT_CLASS",
    "METRICS",
    "CaptureResult",
    "CaptureWarning",
    "CapturedFile",
    "GapHandling",
    "GapOptions",
    "build_manifest",
    "capture_run",
    "derive_bindings",
    "read_series_csv",
    "render_csv",
]


@dataclass
class CaptureResult:
    run_id: str
    files: list[CapturedFile]
    warnings: list[CaptureWarning]
    manifest: dict[str, Any] = field(default_factory=dict)


# --- reading the canonical run (FlowTime ``RunArtifactReader``)


@dataclass(frozen=True)
class _Run:
    run_json: dict[str, Any]
    index: dict[str, Any]
    spec: dict[str, Any]


def _read_json(path: Path, what: str) -> dict[str, Any]:
    if not path.is_file():
        raise capture_failed(f"{what} not found in the source run.", file=what)
    try:
        document = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, ValueError) as exc:
        raise capture_failed(f"{what} of the source run is unreadable: {exc}.", file=what) from None
    if not isinstance(document, dict):
        raise capture_failed(f"{what} of the source run is not a JSON object.", file=what)
    return document


def _read_run(run_dir: Path) -> _Run:
    if not run_dir.is_dir():
        raise capture_failed("The source run directory was not found.", runId=run_dir.name)
    run_json = _read_json(run_dir / "run.json", "run.json")
    index = _read_json(run_dir / "series" / "index.json", "series/index.json")
    spec_path = run_dir / "spec.yaml"
    if not spec_path.is_file():
        raise capture_failed("Canonical spec.yaml not found in the source run.", file="spec.yaml")
    try:
        spec = yaml.safe_load(spec_path.read_text(encoding="utf-8-sig"))
    except (OSError, yaml.YAMLError) as exc:
        raise capture_failed(f"spec.yaml of the source run is unreadable: {exc}.") from None
    return _Run(run_json, index, spec if isinstance(spec, dict) else {})


# --- the pipeline (§4.7)


def capture_run(
    run_dir: Path,
    out_dir: Path,
    *,
    now: datetime,
    gap_options: GapOptions | None = None,
    dry_run: bool = False,
) -> CaptureResult:
    """Capture the canonical run in ``run_dir`` into the existing directory ``out_dir``."""
    options = gap_options or GapOptions()
    run = _read_run(run_dir)
    index_series = [e for e in run.index.get("series") or [] if isinstance(e, dict)]
    by_id = {str(e.get("id")): e for e in index_series}
    files = derive_bindings(run.spec, index_series)
    warnings: list[CaptureWarning] = []
    payloads: list[tuple[CapturedFile, bytes]] = []
    for planned in files:
        entry = by_id[planned.source_series_id]
        relative = str(entry.get("path") or f"series/{planned.source_series_id}.csv")
        values = read_series_csv(run_dir / relative, relative)
        file_name = Path(relative).name
        if planned.points > 0 and len(values) != planned.points:
            message = (
                f"Series '{file_name}' contained {len(values)} points "
                f"but expected {planned.points}."
            )
            warnings.append(CaptureWarning("length_mismatch", message))
        values, gap_warnings = process_gaps(values, planned.node_id, planned.metric, options)
        warnings.extend(gap_warnings)
        payloads.append((planned, render_csv(values, planned.class_id)))
    run_id = str(run.run_json.get("runId") or run_dir.name)
    if dry_run:
        return CaptureResult(run_id, files, warnings)
    written: list[CapturedFile] = []
    for planned, data in payloads:
        _write(out_dir / planned.path, data)
        written.append(_with_hash(planned, sha256_bytes(data)))
    manifest = build_manifest(run.run_json, run.index, run.spec, written, warnings, now)
    _write(out_dir / "manifest.json", dotnet_json(manifest, indent=True).encode("utf-8"))
    return CaptureResult(run_id, written, warnings, manifest)


def _write(path: Path, data: bytes) -> None:
    """Plain write: the caller writes into a staging directory that is fsynced and published
    as a whole (:func:`flowdrop.core.fs.storage.publish_dir`)."""
    try:
        path.write_bytes(data)
    except OSError as exc:
        msg = f"Could not write '{path.name}' of the bundle: {exc.strerror or exc}."
        raise FlowdropError(ErrorCode.STORAGE_ERROR, msg, file=path.name, errno=exc.errno) from exc


def _with_hash(planned: CapturedFile, digest: str) -> CapturedFile:
    return CapturedFile(
        planned.node_id,
        planned.metric,
        planned.source_series_id,
        planned.path,
        planned.class_id,
        planned.points,
        digest,
    )
