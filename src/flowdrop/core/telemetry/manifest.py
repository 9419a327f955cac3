"""The capture manifest (FlowTime ``CaptureManifestWriter``, §4.6) and its warnings.

Schema v2, in FlowTime's field order with nulls omitted: window, grid, files with their SHA-256,
warnings, provenance of the source run, class metrics and coverage.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flowdrop.core.telemetry.bindings import DEFAULT_CLASS, CapturedFile
from flowdrop.core.templating.model import iso_o

_UNIT_MINUTES = {"minutes": 1, "hours": 60, "days": 1440}


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


def build_manifest(
    run_json: Mapping[str, Any],
    index: Mapping[str, Any],
    spec: Mapping[str, Any],
    files: list[CapturedFile],
    warnings: list[CaptureWarning],
    now: datetime,
) -> dict[str, Any]:
    """The schema-v2 capture manifest of the source run (its run.json, series/index.json and
    spec.yaml), in FlowTime's field order, nulls omitted."""
    grid = index.get("grid") if isinstance(index.get("grid"), dict) else {}
    assert isinstance(grid, dict)
    bins, bin_size = int(grid.get("bins") or 0), int(grid.get("binSize") or 0)
    unit = str(grid.get("binUnit") or "minutes")
    window: dict[str, Any] = {}
    spec_grid = spec.get("grid") if isinstance(spec.get("grid"), dict) else {}
    assert isinstance(spec_grid, dict)
    start = spec_grid.get("start") or spec_grid.get("startTimeUtc")
    if start is not None:
        window["startTimeUtc"] = start if isinstance(start, str) else iso_o(start)
    if unit.lower() in _UNIT_MINUTES:
        window["durationMinutes"] = bins * bin_size * _UNIT_MINUTES[unit.lower()]
    provenance: dict[str, Any] = {
        "runId": run_json.get("runId"),
        "scenarioHash": run_json.get("scenarioHash"),
    }
    if run_json.get("modelHash"):
        provenance["modelHash"] = run_json["modelHash"]
    provenance["capturedAtUtc"] = iso_o(now)
    captured = list(dict.fromkeys(f.class_id for f in files if f.class_id != DEFAULT_CLASS))
    declared = _declared_classes(spec)
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


def _declared_classes(spec: Mapping[str, Any]) -> list[str]:
    raw = spec.get("classes")
    out: list[str] = []
    for item in raw if isinstance(raw, list) else []:
        class_id = item.get("id") if isinstance(item, dict) else item
        if isinstance(class_id, str) and class_id and class_id != DEFAULT_CLASS:
            out.append(class_id)
    return out
