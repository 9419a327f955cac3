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

from flowdrop.core import yamltext
from flowdrop.core.errors import ErrorCode, FlowdropError
from flowdrop.core.numerics import sequential_sum
from flowdrop.core.parameters import PLACEHOLDER, merge_parameters, substitute
from flowdrop.core.profiles import resolve_profile
from flowdrop.core.shapes import check_shapes
from flowdrop.core.template import Template, parse_yaml
from flowdrop.core.validation import invalid, is_number, text, validate_template

SIM_GENERATOR_VERSION = "0.6.0"
MAX_BINS = 10000
MAX_BIN_SIZE = 1000
UNIT_MINUTES = {"minutes": 1, "hours": 60, "days": 1440, "weeks": 10080}
_ROOT_KEYS = {
    "schemaVersion", "generator", "mode", "metadata", "window", "parameters", "grid",
    "classes", "traffic", "topology", "nodes", "outputs", "rng", "provenance",
}  # fmt: skip
_OUTPUT_SEMANTICS = (
    "arrivals", "served", "errors", "attempts", "failures", "retryEcho", "queueDepth",
    "capacity", "external_demand", "processingTimeMsSum", "servedCount",
)  # fmt: skip
_SEMANTIC_ORDER = (
    "arrivals", "served", "errors", "attempts", "failures", "exhaustedFailures",
    "retryEcho", "retryKernel", "retryBudgetRemaining", "queueDepth", "capacity",
    "parallelism", "externalDemand", "processingTimeMsSum", "servedCount", "maxAttempts",
    "backoffStrategy", "exhaustedPolicy", "aliases",
)  # fmt: skip


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
                self.nodes[index] = replacement
                return
        raise FlowdropError(
            ErrorCode.TEMPLATE_INVALID,
            f"Node '{node_id}' does not exist in the model.",
            nodeId=node_id,
        )

    def copy(self) -> Model:
        """A deep copy (``set_values`` mutates)."""
        clone = copy.copy(self)
        clone.document = copy.deepcopy(self.document)
        return clone


def snake(identifier: str) -> str:
    """Upstream's snake-case for synthesized ids: ``HubQueue`` -> ``hub_queue``."""
    out: list[str] = []
    for index, ch in enumerate(c for c in identifier if not c.isspace()):
        if ch.isupper():
            if index > 0 and out and out[-1] != "_":
                out.append("_")
            out.append(ch.lower())
        elif ch.isalnum():
            out.append(ch)
        else:
            out.append("_")
    return "".join(out).strip("_")


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


def _queue_synthesis(root: dict[str, Any]) -> None:
    """QueueNodeSynthesizer (§4.4): hidden serviceWithBuffer nodes for buffered topology nodes."""
    nodes: list[dict[str, Any]] = root.setdefault("nodes", []) or []
    topology = root.get("topology") or {}
    for tnode in topology.get("nodes") or []:
        if not isinstance(tnode, dict):
            continue
        if text(tnode.get("kind")).lower() not in ("servicewithbuffer", "queue", "dlq"):
            continue
        semantics = tnode.setdefault("semantics", {}) or {}
        requested = text(semantics.get("queueDepth"))
        existing = {text(n.get("id")) for n in nodes if isinstance(n, dict)}
        if requested and requested != "self" and requested in existing:
            continue
        tid = text(tnode.get("id"))
        arrivals = text(semantics.get("arrivals"))
        if not arrivals:
            raise invalid(
                f"Topology node '{tid}' must define semantics.arrivals to synthesize queue behavior.",
                "topology.nodes.semantics.arrivals",
                tid,
            )
        outflow = text(semantics.get("served")) or text(semantics.get("capacity"))
        if not outflow:
            raise invalid(
                f"Topology node '{tid}' must define semantics.served or semantics.capacity to "
                "synthesize queue behavior.",
                "topology.nodes.semantics.served",
                tid,
            )
        if requested and requested != "self":
            queue_id = requested
        else:
            base = snake(tid) + "_queue"
            lowered = {e.lower() for e in existing}
            queue_id, k = base, 0
            while queue_id.lower() in lowered:
                k += 1
                queue_id = f"{base}_{k}"
        synthesized: dict[str, Any] = {
            "id": queue_id,
            "kind": "serviceWithBuffer",
            "inflow": arrivals,
            "outflow": outflow,
        }
        loss = text(semantics.get("errors"))
        if loss:
            synthesized["loss"] = loss
        if isinstance(tnode.get("dispatchSchedule"), dict):
            synthesized["dispatchSchedule"] = dict(tnode["dispatchSchedule"])
        synthesized["metadata"] = {"graph.hidden": "true"}
        nodes.append(synthesized)
        semantics["queueDepth"] = queue_id


def _sink_synthesis(root: dict[str, Any]) -> None:
    """SinkNodeSynthesizer (§4.5): served = arrivals, or MAX(0, arrivals - errors)."""
    nodes: list[dict[str, Any]] = root.get("nodes") or []
    for tnode in (root.get("topology") or {}).get("nodes") or []:
        if not isinstance(tnode, dict) or text(tnode.get("kind")).lower() != "sink":
            continue
        tid = text(tnode.get("id"))
        semantics = tnode.setdefault("semantics", {}) or {}
        arrivals = text(semantics.get("arrivals"))
        if not arrivals:
            raise invalid(
                f"Topology node '{tid}' of kind sink must define semantics.arrivals.",
                "topology.nodes.semantics.arrivals",
                tid,
            )
        served, errors = text(semantics.get("served")), text(semantics.get("errors"))
        if not served:
            if errors:
                served_id = snake(tid) + "_served"
                nodes.append(
                    {
                        "id": served_id,
                        "kind": "expr",
                        "expr": f"MAX(0, {arrivals} - {errors})",
                        "metadata": {"graph.hidden": "true"},
                    }
                )
                semantics["served"] = served_id
            else:
                semantics["served"] = arrivals
        elif not errors and served != arrivals:
            raise invalid(
                f"Topology node '{tid}' of kind sink must map semantics.served to the same "
                "series as semantics.arrivals.",
                "topology.nodes.semantics.served",
                served,
            )


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


def _pmf_expected(pmf: Mapping[str, Any]) -> float:
    return sequential_sum(
        [float(v) * float(p) for v, p in zip(pmf["values"], pmf["probabilities"], strict=True)]
    )


def _emit_node(node: dict[str, Any], bins: int, where: str) -> dict[str, Any]:
    kind = text(node.get("kind"))
    out: dict[str, Any] = {"id": text(node.get("id")), "kind": kind}
    metadata = dict(node.get("metadata") or {})
    if kind == "const":
        values = node.get("values")
        if not isinstance(values, list) or any(not is_number(v) for v in values):
            raise invalid(
                f"YAML parsing error: const node '{out['id']}' values must be a sequence of numbers.",
                f"{where}.values",
                values if not isinstance(values, list) else None,
            )
        out["values"] = values
    elif kind == "expr":
        out["expr"] = str(node["expr"])
    elif kind == "pmf":
        profile = node.get("profile")
        if isinstance(profile, dict):
            expected = _pmf_expected(node["pmf"])
            weights = profile.get("weights")
            resolved = resolve_profile(
                None if profile.get("kind") is None else str(profile["kind"]),
                None if profile.get("name") is None else str(profile["name"]),
                [float(w) for w in weights] if isinstance(weights, list) else None,
                bins,
            )
            out["kind"] = "const"
            out["values"] = [expected * w for w in resolved]
            metadata["origin.kind"] = "pmf"
            metadata["profile.kind"] = str(profile.get("kind") or "builtin")
            if metadata["profile.kind"].lower() == "builtin" and profile.get("name"):
                metadata["profile.name"] = str(profile["name"])
            metadata["pmf.expected"] = f"{expected:.17g}"
        else:
            pmf = node["pmf"]
            out["pmf"] = {"values": pmf["values"], "probabilities": pmf["probabilities"]}
    elif kind == "serviceWithBuffer":
        for key in ("inflow", "outflow", "loss", "dispatchSchedule"):
            if node.get(key) not in (None, ""):
                out[key] = node[key]
    elif kind == "router":
        out["inputs"] = node["inputs"]
        out["routes"] = node["routes"]
    if metadata:
        out["metadata"] = {str(k): str(v) for k, v in metadata.items()}
    return out


def _emit_topology(topology: dict[str, Any]) -> dict[str, Any]:
    nodes: list[dict[str, Any]] = []
    for tnode in topology.get("nodes") or []:
        out: dict[str, Any] = {"id": text(tnode.get("id")), "kind": text(tnode.get("kind"))}
        for key in ("nodeRole", "group", "constraints"):
            if tnode.get(key) not in (None, "", []):
                out[key] = tnode[key]
        raw = dict(tnode.get("semantics") or {})
        if "external_demand" in raw:
            raw["externalDemand"] = raw.pop("external_demand")
        semantics: dict[str, Any] = {"arrivals": text(raw.get("arrivals"))}
        semantics["served"] = text(raw.get("served"))
        for key in _SEMANTIC_ORDER[2:]:
            value = raw.get(key)
            if value is None or (isinstance(value, str) and not value.strip()):
                continue
            semantics[key] = value
        out["semantics"] = semantics
        initial = tnode.get("initialCondition")
        if isinstance(initial, dict) and initial.get("queueDepth") is not None:
            out["initialCondition"] = {"queueDepth": initial["queueDepth"]}
        for key in ("ui", "dispatchSchedule"):
            if tnode.get(key):
                out[key] = tnode[key]
        nodes.append(out)
    emitted: dict[str, Any] = {"nodes": nodes}
    edges = []
    for edge in topology.get("edges") or []:
        entry = {
            key: edge[key]
            for key in ("id", "from", "to", "weight", "type", "measure", "multiplier", "lag")
            if edge.get(key) is not None
        }
        entry.setdefault("weight", 1.0)
        edges.append(entry)
    if edges:
        emitted["edges"] = edges
    constraints = []
    for constraint in topology.get("constraints") or []:
        sem = constraint.get("semantics") or {}
        constraints.append(
            {
                "id": constraint["id"],
                "semantics": {
                    k: sem[k]
                    for k in ("arrivals", "served", "errors", "latencyMinutes")
                    if sem.get(k) not in (None, "")
                },
            }
        )
    if constraints:
        emitted["constraints"] = constraints
    return emitted


def _ensure_semantics_outputs(root: dict[str, Any]) -> list[dict[str, Any]]:
    outputs: list[dict[str, Any]] = []
    for output in root.get("outputs") or []:
        entry = {"series": text(output.get("series"))}
        if output.get("exclude"):
            entry["exclude"] = output["exclude"]
        if output.get("as"):
            entry["as"] = str(output["as"])
        outputs.append(entry)
    present = {o["series"].lower() for o in outputs}
    for tnode in (root.get("topology") or {}).get("nodes") or []:
        semantics = tnode.get("semantics") or {}
        for key in _OUTPUT_SEMANTICS:
            ref = text(semantics.get(key))
            if ref and ref.lower() not in present:
                present.add(ref.lower())
                outputs.append({"series": ref})
    return outputs


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
    _queue_synthesis(root)
    _sink_synthesis(root)
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
        _emit_node(node, bins, f"nodes[{i}]") for i, node in enumerate(root["nodes"])
    ]
    document["outputs"] = _ensure_semantics_outputs(root)
    document["topology"] = _emit_topology(root.get("topology") or {})
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
