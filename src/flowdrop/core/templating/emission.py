"""Emission of the unified model's nodes and topology (§4.1): what ``spec.yaml`` will contain."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flowdrop.core.numerics import sequential_sum
from flowdrop.core.templating.diagnostics import invalid, is_number, text
from flowdrop.core.templating.profiles import resolve_profile

# FlowTime's template deserializer has no ``exhaustedFailures`` or ``retryBudgetRemaining``
# semantics field, so a template's values never reach the model (engine reference §9.9 notes):
# a terminal edge measuring exhaustedFailures then has no source series, and a node that keeps
# ``maxAttempts`` gets upstream's missing_exhausted_failures/missing_retry_budget warnings.
_SEMANTIC_ORDER = (
    "arrivals", "served", "errors", "attempts", "failures",
    "retryEcho", "retryKernel", "queueDepth", "capacity",
    "parallelism", "externalDemand", "processingTimeMsSum", "servedCount", "maxAttempts",
    "backoffStrategy", "exhaustedPolicy", "aliases",
)  # fmt: skip


def _pmf_expected(pmf: Mapping[str, Any]) -> float:
    return sequential_sum(
        [float(v) * float(p) for v, p in zip(pmf["values"], pmf["probabilities"], strict=True)]
    )


def emit_node(node: dict[str, Any], bins: int, where: str) -> dict[str, Any]:
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


def emit_topology(topology: dict[str, Any]) -> dict[str, Any]:
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
