"""Which series a capture writes, under which file names (FlowTime ``TelemetryCapture``, §4.3).

The topology pass maps every node's semantics (arrivals, served, errors, externalDemand,
queueDepth, capacity) to the run's series, one file per class; without any match, the outputs
fallback recognises metrics by file-name suffix. Names honour the outputs' ``as`` aliases.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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


@dataclass(frozen=True)
class CapturedFile:
    node_id: str
    metric: str
    source_series_id: str
    path: str
    class_id: str
    points: int
    hash: str = ""


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
