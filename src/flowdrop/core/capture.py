"""Telemetry capture: a canonical run directory in, a FlowTime telemetry bundle out.

A faithful port of FlowTime's ``TelemetryCapture`` + ``RunArtifactReader`` + ``GapInjector`` +
``CaptureManifestWriter`` (orchestration ref §4): which series are captured and under which file
names, the ``bin_index,classId,value`` CSVs with .NET "G17" numbers, gap and NaN handling with
their warning codes, and the schema-v2 ``manifest.json`` with a SHA-256 per file.

This module only writes into the directory it is given; publishing a bundle (staging directory,
one rename, ``bundle.json``) is :mod:`flowdrop.core.bundle`'s job. It reads the run's files
directly rather than through the engine so that it works on any canonical run, including the
hand-built fixtures of the tests (upstream ``TelemetryRunFactory``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import Any

import yaml

from flowdrop.core.errors import ErrorCode, FlowdropError
from flowdrop.core.hashing import dotnet_json, sha256_bytes
from flowdrop.core.numerics import format_g17

# Semantics field -> manifest metric name, in FlowTime's capture order.
METRICS: dict[str, str] = {
    "arrivals": "Arrivals",
    "served": "Served",
    "errors": "Errors",
    "externalDemand": "ExternalDemand",
    "queueDepth": "QueueDepth",
    "capacity": "Capacity",
}
# Fallback pass: file-name suffix -> metric, checked in this order.
_SUFFIXES = (
    ("_arrivals", "Arrivals"),
    ("_served", "Served"),
    ("_errors", "Errors"),
    ("_queue_depth", "QueueDepth"),
    ("_queue", "QueueDepth"),
    ("_external_demand", "ExternalDemand"),
    ("_capacity", "Capacity"),
)
DEFAULT_CLASS = "DEFAULT"
CSV_HEADER = "bin_index,classId,value"
_UNIT_MINUTES = {"minutes": 1, "hours": 60, "days": 1440}


class GapHandling(Enum):
    IGNORE = 0
    WARN_ONLY = 1
    FILL_WITH_ZERO = 2


@dataclass(frozen=True)
class GapOptions:
    """FlowTime's default: keep NaN (with a warning) and ignore missing values."""

    fill_nan_with_zero: bool = False
    missing_value_handling: GapHandling = GapHandling.IGNORE


@dataclass(frozen=True)
class CaptureWarning:
    code: str
    message: str
    node_id: str | None = None
    bins: tuple[int, ...] | None = None
    severity: str = "warning"

    def to_json(self) -> dict[str, Any]:
        """camelCase, nulls omitted (the capture manifest writer's convention)."""
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.node_id is not None:
            out["nodeId"] = self.node_id
        if self.bins is not None:
            out["bins"] = list(self.bins)
        out["severity"] = self.severity
        return out


@dataclass(frozen=True)
class CapturedFile:
    node_id: str
    metric: str
    source_series_id: str
    path: str
    class_id: str
    points: int
    hash: str = ""


@dataclass
class CaptureResult:
    run_id: str
    files: list[CapturedFile]
    warnings: list[CaptureWarning]
    manifest: dict[str, Any] = field(default_factory=dict)


def _failed(message: str, **details: Any) -> FlowdropError:
    return FlowdropError(ErrorCode.CAPTURE_FAILED, message, **details)


# --- reading the canonical run ---------------------------------------------------------------


@dataclass(frozen=True)
class _Run:
    run_json: dict[str, Any]
    index: dict[str, Any]
    spec: dict[str, Any]


def _read_json(path: Path, what: str) -> dict[str, Any]:
    if not path.is_file():
        raise _failed(f"{what} not found in the source run.", file=what)
    try:
        document = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, ValueError) as exc:
        raise _failed(f"{what} of the source run is unreadable: {exc}.", file=what) from None
    if not isinstance(document, dict):
        raise _failed(f"{what} of the source run is not a JSON object.", file=what)
    return document


def _read_run(run_dir: Path) -> _Run:
    if not run_dir.is_dir():
        raise _failed("The source run directory was not found.", runId=run_dir.name)
    run_json = _read_json(run_dir / "run.json", "run.json")
    index = _read_json(run_dir / "series" / "index.json", "series/index.json")
    spec_path = run_dir / "spec.yaml"
    if not spec_path.is_file():
        raise _failed("Canonical spec.yaml not found in the source run.", file="spec.yaml")
    try:
        spec = yaml.safe_load(spec_path.read_text(encoding="utf-8-sig"))
    except (OSError, yaml.YAMLError) as exc:
        raise _failed(f"spec.yaml of the source run is unreadable: {exc}.") from None
    return _Run(run_json, index, spec if isinstance(spec, dict) else {})


def _series_node_id(series_id: str) -> str:
    return series_id.split("@", 1)[0]


def _normalise_reference(reference: str) -> str:
    text = reference.strip()
    if text.lower().startswith("file:"):
        text = text[5:]
    text = text.lstrip("/").replace("\\", "/").rsplit("/", 1)[-1]
    if text.lower().endswith(".csv"):
        text = text[:-4]
    return text.split("@", 1)[0]


def _ensure_csv(name: str) -> str:
    return name if name.lower().endswith(".csv") else f"{name}.csv"


def _class_file(base: str, class_id: str) -> str:
    if not class_id or class_id == DEFAULT_CLASS:
        return base
    stem, dot, ext = base.rpartition(".")
    return f"{stem}_{class_id}.{ext}" if dot else f"{base}_{class_id}"


# --- which series are captured (§4.3) --------------------------------------------------------


def _outputs(spec: dict[str, Any]) -> list[dict[str, Any]]:
    raw = spec.get("outputs")
    return [o for o in raw if isinstance(o, dict)] if isinstance(raw, list) else []


def derive_bindings(spec: dict[str, Any], index_series: list[dict[str, Any]]) -> list[CapturedFile]:
    """The files a capture writes, in FlowTime's order (topology pass, else outputs fallback)."""
    aliases: dict[str, str] = {}
    for output in _outputs(spec):
        series = str(output.get("series") or "").strip()
        if series:
            alias = str(output.get("as") or "").strip() or f"{series}.csv"
            aliases[series] = _ensure_csv(alias)
    groups: dict[str, list[dict[str, Any]]] = {}
    for entry in index_series:
        groups.setdefault(_series_node_id(str(entry.get("id", ""))).lower(), []).append(entry)

    files: list[CapturedFile] = []
    topology = spec.get("topology")
    nodes = topology.get("nodes") if isinstance(topology, dict) else None
    for node in nodes if isinstance(nodes, list) else []:
        if not isinstance(node, dict) or not isinstance(node.get("semantics"), dict):
            continue
        node_id = str(node.get("id", ""))
        for field_name, metric in METRICS.items():
            reference = node["semantics"].get(field_name)
            if not isinstance(reference, str) or not reference.strip():
                continue
            series = _normalise_reference(reference)
            entries = groups.get(series.lower())
            if not entries:
                continue
            base = aliases.get(series) or f"{node_id.replace(' ', '_')}_{field_name.lower()}.csv"
            files.extend(_files_for(node_id, metric, base, entries))
    if files:
        return files
    for output in _outputs(spec):
        series = str(output.get("series") or "").strip()
        entries = groups.get(series.lower()) if series else None
        if not entries:
            continue
        name = aliases.get(series, f"{series}.csv")
        lowered = name[:-4].lower() if name.lower().endswith(".csv") else name.lower()
        for suffix, metric in _SUFFIXES:
            if lowered.endswith(suffix):
                node_id = name[: len(lowered) - len(suffix)].rstrip("_")
                if node_id:
                    files.extend(_files_for(node_id, metric, name, entries[:1]))
                break
    return files


def _files_for(
    node_id: str, metric: str, base: str, entries: list[dict[str, Any]]
) -> list[CapturedFile]:
    out = []
    for entry in entries:
        class_id = str(entry.get("class") or DEFAULT_CLASS)
        out.append(
            CapturedFile(
                node_id=node_id,
                metric=metric,
                source_series_id=str(entry.get("id")),
                path=_class_file(base, class_id),
                class_id=class_id,
                points=int(entry.get("points") or 0),
            )
        )
    return out


# --- per-series processing (§4.4) ------------------------------------------------------------


def read_series_csv(path: Path, shown: str) -> list[float | None]:
    """Values of a canonical ``bin_index,value`` CSV; ``None`` marks an empty value (a gap)."""
    if not path.is_file():
        raise _failed(f"Series file not found: {shown}", file=shown)
    lines = path.read_text(encoding="utf-8-sig").splitlines()
    if not lines:
        raise _failed(f"Series file {shown} is empty.", file=shown)
    values: list[float | None] = []
    for line in lines[1:]:
        if not line.strip():
            continue
        if "," not in line:
            raise _failed(f"Invalid CSV row '{line}' in {shown}.", file=shown)
        raw = line.split(",", 1)[1].strip()
        values.append(_parse_value(raw, shown))
    return values


def _parse_value(raw: str, shown: str) -> float | None:
    if raw == "":
        return None
    lowered = raw.lower()
    if lowered == "nan":
        return math.nan
    if lowered in {"infinity", "+infinity", "∞"}:
        return math.inf
    if lowered in {"-infinity", "-∞"}:
        return -math.inf
    try:
        return float(raw.replace(",", ""))
    except ValueError:
        raise _failed(f"Unable to parse value '{raw}' from {shown}.", file=shown) from None


def _process_gaps(
    values: list[float | None], node_id: str, metric: str, options: GapOptions
) -> tuple[list[float | None], list[CaptureWarning]]:
    out: list[float | None] = []
    warnings: list[CaptureWarning] = []
    for i, value in enumerate(values):
        if value is None:
            if options.missing_value_handling is not GapHandling.IGNORE:
                warnings.append(
                    CaptureWarning(
                        "data_gap",
                        f"Missing value at bin {i} for {node_id}:{metric}.",
                        node_id,
                        (i,),
                    )
                )
            fill = options.missing_value_handling is GapHandling.FILL_WITH_ZERO
            out.append(0.0 if fill else None)
        elif math.isnan(value) or math.isinf(value):
            if options.fill_nan_with_zero:
                message = f"Filled NaN/∞ at bin {i} for {node_id}:{metric}."
                warnings.append(CaptureWarning("nan_fill", message, node_id, (i,)))
                out.append(0.0)
            else:
                message = f"Detected NaN/∞ at bin {i} for {node_id}:{metric}."
                warnings.append(CaptureWarning("nan_detected", message, node_id, (i,)))
                out.append(value)
        else:
            out.append(value)
    return out, warnings


def render_csv(values: list[float | None], class_id: str) -> bytes:
    """``bin_index,classId,value`` rows, G17 numbers, empty value for a gap; UTF-8, no BOM, LF."""
    rows = [CSV_HEADER]
    rows.extend(
        f"{i},{class_id},{'' if v is None else format_g17(v)}" for i, v in enumerate(values)
    )
    return ("\n".join(rows) + "\n").encode("utf-8")


# --- the pipeline (§4.7) ---------------------------------------------------------------------


def format_utc(moment: datetime) -> str:
    """ISO-8601 round-trip UTC with 7 fractional digits and ``Z`` (.NET ``"o"``)."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"


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
        values, gap_warnings = _process_gaps(values, planned.node_id, planned.metric, options)
        warnings.extend(gap_warnings)
        payloads.append((planned, render_csv(values, planned.class_id)))
    run_id = str(run.run_json.get("runId") or run_dir.name)
    if dry_run:
        return CaptureResult(run_id, files, warnings)
    written: list[CapturedFile] = []
    for planned, data in payloads:
        _write(out_dir / planned.path, data)
        written.append(_with_hash(planned, sha256_bytes(data)))
    manifest = build_manifest(run, written, warnings, now)
    _write(out_dir / "manifest.json", dotnet_json(manifest, indent=True).encode("utf-8"))
    return CaptureResult(run_id, written, warnings, manifest)


def _write(path: Path, data: bytes) -> None:
    """Plain write: the caller writes into a staging directory that is fsynced and published
    as a whole (:func:`flowdrop.core.storage.publish_dir`)."""
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


def build_manifest(
    run: _Run, files: list[CapturedFile], warnings: list[CaptureWarning], now: datetime
) -> dict[str, Any]:
    """The schema-v2 capture manifest, in FlowTime's field order, nulls omitted."""
    grid = run.index.get("grid") if isinstance(run.index.get("grid"), dict) else {}
    assert isinstance(grid, dict)
    bins, bin_size = int(grid.get("bins") or 0), int(grid.get("binSize") or 0)
    unit = str(grid.get("binUnit") or "minutes")
    window: dict[str, Any] = {}
    spec_grid = run.spec.get("grid") if isinstance(run.spec.get("grid"), dict) else {}
    assert isinstance(spec_grid, dict)
    start = spec_grid.get("start") or spec_grid.get("startTimeUtc")
    if start is not None:
        window["startTimeUtc"] = start if isinstance(start, str) else format_utc(start)
    if unit.lower() in _UNIT_MINUTES:
        window["durationMinutes"] = bins * bin_size * _UNIT_MINUTES[unit.lower()]
    provenance: dict[str, Any] = {
        "runId": run.run_json.get("runId"),
        "scenarioHash": run.run_json.get("scenarioHash"),
    }
    if run.run_json.get("modelHash"):
        provenance["modelHash"] = run.run_json["modelHash"]
    provenance["capturedAtUtc"] = format_utc(now)
    captured = list(dict.fromkeys(f.class_id for f in files if f.class_id != DEFAULT_CLASS))
    declared = _declared_classes(run.spec)
    manifest: dict[str, Any] = {"schemaVersion": 2, "window": window}
    manifest["grid"] = {"bins": bins, "binSize": bin_size, "binUnit": unit}
    manifest["files"] = [
        {
            "nodeId": f.node_id,
            "metric": f.metric,
            "path": f.path,
            "hash": f.hash,
            "points": f.points,
            "classId": f.class_id,
        }
        for f in files
    ]
    manifest["warnings"] = [w.to_json() for w in warnings]
    manifest["provenance"] = provenance
    manifest["supportsClassMetrics"] = bool(captured)
    if captured:
        manifest["classes"] = list(dict.fromkeys([*declared, *captured])) if declared else captured
    if not captured:
        coverage = "missing"
    elif set(declared) == set(captured):
        coverage = "full"
    else:
        coverage = "partial"
    manifest["classCoverage"] = coverage
    return manifest


def _declared_classes(spec: dict[str, Any]) -> list[str]:
    raw = spec.get("classes")
    out: list[str] = []
    for item in raw if isinstance(raw, list) else []:
        class_id = item.get("id") if isinstance(item, dict) else item
        if isinstance(class_id, str) and class_id and class_id != DEFAULT_CLASS:
            out.append(class_id)
    return out
