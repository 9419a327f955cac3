"""Template -> unified model: substitution, validation, synthesis and emission (§2-§4).

The emitted model is kept as an ordered document (what ``spec.yaml`` contains) so that
``Model.to_yaml()`` is exactly the text a run records and the evaluator reads the same data.
"""

from __future__ import annotations

import copy
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from flowdrop.core.errors import ErrorCode, FlowdropError
from flowdrop.core.templating import yamltext
from flowdrop.core.templating.diagnostics import invalid, text
from flowdrop.core.templating.emission import emit_node, emit_topology
from flowdrop.core.templating.parameters import PLACEHOLDER, merge_parameters, substitute
from flowdrop.core.templating.shapes import check_shapes
from flowdrop.core.templating.synthesis import (
    semantics_outputs,
    synthesize_queues,
    synthesize_sinks,
)
from flowdrop.core.templating.template import Template, parse_yaml
from flowdrop.core.templating.validation import validate_template

SIM_GENERATOR_VERSION = "0.6.0"
MAX_BINS = 10000
MAX_BIN_SIZE = 1000
UNIT_MINUTES = {"minutes": 1, "hours": 60, "days": 1440, "weeks": 10080}
_ROOT_KEYS = {
    "schemaVersion", "generator", "mode", "metadata", "window", "parameters", "grid",
    "classes", "traffic", "topology", "nodes", "outputs", "rng", "provenance",
}  # fmt: skip


@dataclass(frozen=True)
class Grid:
    """The model's time grid (bins are UTC and left-aligned)."""

    bins: int
    bin_size: int
    bin_unit: str
    start: str | None = None

    @property
    def bin_minutes(self) -> int:
        return self.bin_size * UNIT_MINUTES.get(self.bin_unit.lower(), 1)


class Model:
    """The emitted unified model plus the template facts the run writer records."""

    def __init__(
        self,
        document: dict[str, Any],
        *,
        template_id: str = "adhoc-model",
        template_version: str = "0.0.0",
        template_title: str | None = None,
        template_narrative: str | None = None,
        mode: str = "simulation",
        generated_at_pinned: bool = True,
    ) -> None:
        self.document = document
        self.template_id = template_id
        self.template_version = template_version
        self.template_title = template_title or template_id
        self.template_narrative = template_narrative
        self.mode = mode
        self.generated_at_pinned = generated_at_pinned

    def to_yaml(self) -> str:
        """The exact model text recorded as ``spec.yaml`` / ``model/model.yaml``."""
        return yamltext.dump(self.document)

    @property
    def grid(self) -> Grid:
        raw = self.document["grid"]
        return Grid(
            bins=int(raw["bins"]),
            bin_size=int(raw["binSize"]),
            bin_unit=str(raw.get("binUnit") or "minutes"),
            start=None if raw.get("start") is None else str(raw["start"]),
        )

    @property
    def nodes(self) -> list[dict[str, Any]]:
        nodes: list[dict[str, Any]] = self.document.get("nodes", [])
        return nodes

    @property
    def node_ids(self) -> list[str]:
        return [str(node["id"]) for node in self.nodes]

    @property
    def topology(self) -> dict[str, Any]:
        topology: dict[str, Any] = self.document.get("topology") or {}
        return topology

    @property
    def outputs(self) -> list[dict[str, Any]]:
        outputs: list[dict[str, Any]] = self.document.get("outputs") or []
        return outputs

    @property
    def classes(self) -> list[dict[str, Any]]:
        classes: list[dict[str, Any]] = self.document.get("classes") or []
        return classes

    @property
    def provenance(self) -> dict[str, Any]:
        provenance: dict[str, Any] = self.document.get("provenance") or {}
        return provenance

    def set_values(self, node_id: str, values: Sequence[float]) -> None:
        """Turn ``node_id`` into a const with ``values`` (telemetry replay injects captures)."""
        for index, node in enumerate(self.nodes):
            if node.get("id") == node_id:
                replacement: dict[str, Any] = {"id": node_id, "kind": "const"}
                replacement["values"] = [float(v) for v in values]
                if node.get("metadata"):
                    replacement["metadata"] = node["metadata"]
                # A new list, not an assignment into the old one: a model from the compile
                # cache shares its node list with the cache entry.
                nodes = list(self.nodes)
                nodes[index] = replacement
                self.document["nodes"] = nodes
                return
        raise FlowdropError(
            ErrorCode.TEMPLATE_INVALID,
            f"Node '{node_id}' does not exist in the model.",
            nodeId=node_id,
        )

    def copy(self) -> Model:
        """A copy that ``set_values`` may change without touching this model.

        Only the document's top level is the copy's own: ``set_values`` replaces the node list
        rather than editing it, and nothing mutates what lies below, so deep-copying every
        node's values (most of a replay's copying) bought nothing.
        """
        clone = copy.copy(self)
        clone.document = dict(self.document)
        return clone


def _schema_check(root: dict[str, Any]) -> None:
    """The subset of template.schema.json we enforce (only when ``schemaVersion`` is present)."""
    if "schemaVersion" not in root:
        return
    problems: list[str] = []
    for key in root:
        if key not in _ROOT_KEYS:
            problems.append(
                f"#: Property '{key}' has not been defined and the schema does not allow additional properties."
            )
    if root.get("schemaVersion") != 1:
        problems.append('#/schemaVersion: Expected "1"')
    grid = root.get("grid")
    if isinstance(grid, dict):
        for key in ("bins", "binSize"):
            value = grid.get(key)
            if not isinstance(value, int) or isinstance(value, bool):
                kind = "string" if isinstance(value, str) else type(value).__name__
                problems.append(f'#/grid/{key}: Value is "{kind}" but should be "integer"')
    if problems:
        raise FlowdropError(
            ErrorCode.TEMPLATE_INVALID,
            "Template failed schema validation: " + "; ".join(problems),
            path="grid" if "grid" in problems[0] else "",
        )


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            offset = value.utcoffset()
            if offset is not None and offset.total_seconds() != 0:
                raise invalid("Template window.start must be UTC.", "window.start", str(value))
        return value.replace(tzinfo=None).strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, date):
        return value.strftime("%Y-%m-%dT00:00:00Z")
    return str(value)


_VALUES_LINE = re.compile(r"^\s*values\s*:(.*)$")


def _const_length_check(template_text: str, merged: Mapping[str, Any], bins: int) -> None:
    """Array parameters feeding a const's ``values:`` must have ``grid.bins`` items (§1.4)."""
    current_id: str | None = None
    current_kind: str | None = None
    for line in template_text.splitlines():
        stripped = line.strip()
        if stripped.startswith("- id:"):
            current_id = stripped[5:].strip().strip("\"'")
            current_kind = None
        elif stripped.startswith("kind:"):
            current_kind = stripped[5:].strip().strip("\"'")
        match = _VALUES_LINE.match(line)
        if not match or current_kind != "const" or current_id is None:
            continue
        for name in PLACEHOLDER.findall(match.group(1)):
            value = merged.get(name)
            if isinstance(value, list | tuple) and len(value) != bins:
                raise FlowdropError(
                    ErrorCode.PARAMETER_INVALID,
                    f"Parameter '{name}' provides {len(value)} values but grid.bins is {bins}; "
                    f"const node '{current_id}' requires matching length.",
                    path=f"parameters.{name}",
                    value=len(value),
                )


def _check_grid_limits(bins: int, bin_size: int, unit: str) -> None:
    if not 1 <= bins <= MAX_BINS:
        raise invalid(f"Grid bins must be between 1 and {MAX_BINS}.", "grid.bins", bins)
    if not 1 <= bin_size <= MAX_BIN_SIZE:
        raise invalid(
            f"Grid binSize must be between 1 and {MAX_BIN_SIZE}.", "grid.binSize", bin_size
        )
    if unit.lower() not in UNIT_MINUTES:
        raise invalid(f"Invalid TimeUnit value: {unit}", "grid.binUnit", unit)


def unprocessable(exc: Exception) -> FlowdropError:
    """Last-resort translation of a shape we did not anticipate; never a traceback for users."""
    return FlowdropError(
        ErrorCode.TEMPLATE_INVALID,
        f"Template could not be processed: {type(exc).__name__}: {exc}",
        error=type(exc).__name__,
    )


UNEXPECTED = (TypeError, ValueError, AttributeError, KeyError, IndexError, OverflowError)


def generate_model(
    template: Template,
    parameters: Mapping[str, Any],
    *,
    mode: str = "simulation",
    now: datetime | None = None,
) -> Model:
    """Substitute, validate and synthesise the unified model of ``template``."""
    try:
        return _generate(template, parameters, mode, now)
    except UNEXPECTED as exc:
        raise unprocessable(exc) from exc


def _generate(
    template: Template, parameters: Mapping[str, Any], mode: str, now: datetime | None
) -> Model:
    merged = merge_parameters(template, parameters)
    substituted = substitute(template.text, merged)
    if not substituted.strip():
        raise invalid("Template YAML content is empty.")
    root = parse_yaml(substituted)
    if not isinstance(root, dict):
        raise invalid("YAML parsing error: the template root must be a mapping.")
    _schema_check(root)
    declared_mode = text(root.get("mode") or "simulation").lower()
    for candidate in (declared_mode, mode.lower()):
        if candidate not in ("simulation", "telemetry"):
            raise invalid(
                f"Unsupported template mode '{candidate}'. Expected 'simulation' or 'telemetry'.",
                "mode",
                candidate,
            )
    check_shapes(root)
    synthesize_queues(root)
    synthesize_sinks(root)
    validate_template(root)
    grid = root["grid"]
    bins, bin_size, unit = int(grid["bins"]), int(grid["binSize"]), text(grid.get("binUnit"))
    _check_grid_limits(bins, bin_size, unit)
    _const_length_check(template.text, merged, bins)
    return _build(template, root, merged, substituted, mode.lower(), now)


def _build(
    template: Template,
    root: dict[str, Any],
    merged: Mapping[str, Any],
    substituted: str,
    mode: str,
    now: datetime | None,
) -> Model:
    grid_raw = root["grid"]
    bins = int(grid_raw["bins"])
    grid: dict[str, Any] = {
        "bins": bins,
        "binSize": int(grid_raw["binSize"]),
        "binUnit": text(grid_raw.get("binUnit")),
    }
    start = _iso(grid_raw.get("start") or (root.get("window") or {}).get("start"))
    if start:
        grid["start"] = start
    document: dict[str, Any] = {"schemaVersion": 1, "grid": grid}
    if root.get("classes"):
        document["classes"] = [
            {k: c[k] for k in ("id", "displayName", "description") if c.get(k) is not None}
            for c in root["classes"]
        ]
    traffic = root.get("traffic")
    if isinstance(traffic, dict) and traffic.get("arrivals"):
        document["traffic"] = {
            "arrivals": [
                {k: a[k] for k in ("nodeId", "classId", "pattern") if a.get(k) is not None}
                for a in traffic["arrivals"]
            ]
        }
    document["nodes"] = [
        emit_node(node, bins, f"nodes[{i}]") for i, node in enumerate(root["nodes"])
    ]
    document["outputs"] = semantics_outputs(root)
    document["topology"] = emit_topology(root.get("topology") or {})
    provenance_raw = root.get("provenance") if isinstance(root.get("provenance"), dict) else {}
    assert isinstance(provenance_raw, dict)
    metadata = root.get("metadata") or {}
    generated_at = provenance_raw.get("generatedAt")
    stamp = now or datetime.now(UTC)
    provenance: dict[str, Any] = {
        "generator": provenance_raw.get("generator")
        or f"{text(root.get('generator') or 'flowtime-sim')}/{SIM_GENERATOR_VERSION}",
        "generatedAt": str(generated_at) if generated_at else iso_o(stamp),
        "templateId": text(metadata.get("id")),
        "templateVersion": provenance_raw.get("templateVersion") or text(metadata.get("version")),
        "mode": provenance_raw.get("mode") or mode,
        "modelId": provenance_raw.get("modelId")
        or hashlib.sha256(substituted.encode("utf-8")).hexdigest(),
    }
    params = dict(provenance_raw.get("parameters") or {})
    params.update({k: list(v) if isinstance(v, tuple) else v for k, v in merged.items()})
    if params:
        provenance["parameters"] = params
    document["provenance"] = provenance
    return Model(
        document,
        template_id=template.id,
        template_version=text(metadata.get("version")) or template.version,
        template_title=text(metadata.get("title")) or template.title,
        template_narrative=text(metadata.get("narrative")) or None,
        mode=mode,
        generated_at_pinned=bool(generated_at),
    )


def iso_o(moment: datetime) -> str:
    """.NET round-trip ("o") UTC timestamp: seven fractional digits and ``Z``."""
    utc = moment.astimezone(UTC) if moment.tzinfo else moment
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond:06d}0Z"
