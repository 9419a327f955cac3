"""Reading a canonical run directory back (``RunArtifactReader``)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from flowdrop.core.errors import ErrorCode, FlowdropError
from flowdrop.core.numerics import FloatArray, parse_float
from flowdrop.core.templating.template import parse_yaml


@dataclass
class RunData:
    """A run as read from disk: documents, index entries and every series' values."""

    path: Path
    run: dict[str, Any]
    manifest: dict[str, Any]
    index: dict[str, Any]
    series: dict[str, FloatArray]
    spec_text: str
    model: dict[str, Any]
    metadata: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] | None = None

    @property
    def run_id(self) -> str:
        return str(self.run.get("runId"))

    @property
    def entries(self) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = self.index.get("series") or []
        return entries

    def node_series(self, node_id: str, class_id: str = "DEFAULT") -> FloatArray:
        """Values of ``<node>@<NODE>@<class>``."""
        return self.series[f"{node_id}@{node_id.upper()}@{class_id}"]

    def classes_of(self, node_id: str) -> dict[str, FloatArray]:
        """Per-class series of a node (empty when none were written)."""
        prefix = f"{node_id}@{node_id.upper()}@"
        return {
            sid[len(prefix) :]: values
            for sid, values in self.series.items()
            if sid.startswith(prefix) and not sid.endswith("@DEFAULT")
        }


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise unreadable(path.name, exc) from None


def unreadable(name: str, exc: Exception) -> FlowdropError:
    """The ``storage_error`` of a run or series file that could not be read or decoded."""
    return FlowdropError(
        ErrorCode.STORAGE_ERROR,
        f"Run file '{name}' could not be read: {type(exc).__name__}.",
        file=name,
    )


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(_read_text(path))
    except json.JSONDecodeError:
        raise FlowdropError(
            ErrorCode.STORAGE_ERROR, f"Run file '{path.name}' is not valid JSON.", file=path.name
        ) from None
    if not isinstance(value, dict):
        raise FlowdropError(
            ErrorCode.STORAGE_ERROR, f"Run file '{path.name}' is not a JSON object.", file=path.name
        )
    return value


def read_series_csv(path: Path, points: int | None = None) -> FloatArray:
    """A ``bin_index,value`` (or ``bin_index,classId,value``) CSV; absent bins are 0."""
    return parse_series_csv(_read_text(path), path.name, points)


def series_from_bytes(data: bytes, name: str, points: int | None = None) -> FloatArray:
    """:func:`read_series_csv` of bytes already read from the file ``name``."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise unreadable(name, exc) from None
    return parse_series_csv(text, name, points)


def parse_series_csv(text: str, name: str, points: int | None = None) -> FloatArray:
    """The values of a series CSV's text (``name`` is for messages)."""
    lines = text.splitlines()
    if not lines or lines[0].strip().lower() not in ("bin_index,value", "bin_index,classid,value"):
        raise FlowdropError(
            ErrorCode.STORAGE_ERROR,
            f"Series file '{name}' has an unexpected header.",
            file=name,
        )
    rows = [line.split(",") for line in lines[1:] if line.strip()]
    size = points if points is not None else len(rows)
    values = np.zeros(size, dtype=np.float64)
    for row in rows:
        index = int(row[0])
        if not 0 <= index < size:
            raise FlowdropError(
                ErrorCode.STORAGE_ERROR,
                f"Series file '{name}' has bin index {index} outside the grid.",
                file=name,
            )
        values[index] = parse_float(row[-1])
    return values


def read_run(run_dir: Path) -> RunData:
    """Read run.json, manifest.json, series/index.json, every series CSV and the spec."""
    if not (run_dir / "run.json").is_file():
        raise FlowdropError(
            ErrorCode.STORAGE_ERROR, f"Run '{run_dir.name}' has no run.json.", run=run_dir.name
        )
    run = _read_json(run_dir / "run.json")
    manifest = _read_json(run_dir / "manifest.json")
    index = _read_json(run_dir / "series" / "index.json")
    series: dict[str, FloatArray] = {}
    for entry in index.get("series") or []:
        series[str(entry["id"])] = read_series_csv(
            run_dir / str(entry["path"]), int(entry["points"])
        )
    spec_text = _read_text(run_dir / "spec.yaml")
    model = parse_yaml(spec_text)
    metadata_path = run_dir / "model" / "metadata.json"
    provenance_path = run_dir / "model" / "provenance.json"
    return RunData(
        path=run_dir,
        run=run,
        manifest=manifest,
        index=index,
        series=series,
        spec_text=spec_text,
        model=model if isinstance(model, dict) else {},
        metadata=_read_json(metadata_path) if metadata_path.is_file() else {},
        provenance=_read_json(provenance_path) if provenance_path.is_file() else None,
    )
