"""TemplateValidator rules for topology, classes/traffic and rng (§1.6, §1.7, §1.10, §3)."""

from __future__ import annotations

import math
from typing import Any

from flowdrop.core.hashing import RNG_KIND
from flowdrop.core.templating.diagnostics import invalid, is_number, text

SEMANTIC_SERIES = (
    "arrivals",
    "served",
    "errors",
    "attempts",
    "failures",
    "retryEcho",
    "queueDepth",
    "capacity",
    "external_demand",
    "processingTimeMsSum",
    "servedCount",
)
RESTRICTED = ("queueDepth", "capacity", "attempts", "failures", "retryEcho", "retryKernel")


def validate_topology(topology: Any, ids: set[str], root: dict[str, Any]) -> None:
    nodes = topology.get("nodes") if isinstance(topology, dict) else None
    if not isinstance(nodes, list) or not nodes:
        raise invalid("Template topology must define at least one node.", "topology.nodes")
    assert isinstance(topology, dict)
    constraint_ids = _constraints(topology.get("constraints"), ids)
    seen: set[str] = set()
    simulation = text(root.get("mode") or "simulation").lower() == "simulation"
    for i, node in enumerate(nodes):
        _topology_node(i, node, ids, seen, constraint_ids, simulation)
    edges = topology.get("edges")
    if len(nodes) > 1 and not edges:
        raise invalid(
            "Topology edges are required when more than one topology node exists.",
            "topology.edges",
        )
    for i, edge in enumerate(edges or []):
        for end, label in (("from", "source"), ("to", "target")):
            ref = text(edge.get(end)).split(":", 1)[0] if isinstance(edge, dict) else ""
            if ref not in seen:
                raise invalid(
                    f"Topology edge references unknown {label} node '{ref}'.",
                    f"topology.edges[{i}].{end}",
                    ref,
                )


def _constraints(constraints: Any, ids: set[str]) -> set[str]:
    found: set[str] = set()
    for i, constraint in enumerate(constraints or []):
        cid = text(constraint.get("id")) if isinstance(constraint, dict) else ""
        where = f"topology.constraints[{i}]"
        if not cid:
            raise invalid("Topology constraints must declare an id.", f"{where}.id")
        if cid.lower() in found:
            raise invalid(f"Duplicate constraint id '{cid}' detected.", f"{where}.id", cid)
        found.add(cid.lower())
        semantics = constraint.get("semantics") or {}
        for field in ("arrivals", "served"):
            if not text(semantics.get(field)):
                raise invalid(
                    f"Constraint '{cid}' must define semantics.{field}.", f"{where}.semantics"
                )
        for field in ("arrivals", "served", "errors", "latencyMinutes"):
            ref = text(semantics.get(field))
            if ref and ref not in ids:
                raise invalid(
                    f"Constraint '{cid}' semantics.{field} references unknown series '{ref}'.",
                    f"{where}.semantics.{field}",
                    ref,
                )
    return found


def _topology_node(
    i: int,
    node: Any,
    ids: set[str],
    seen: set[str],
    constraint_ids: set[str],
    simulation: bool,
) -> None:
    where = f"topology.nodes[{i}]"
    tid = text(node.get("id")) if isinstance(node, dict) else ""
    if not tid:
        raise invalid("Topology nodes must declare an id.", f"{where}.id")
    if tid in seen:
        raise invalid(f"Duplicate topology node id '{tid}' detected.", f"{where}.id", tid)
    seen.add(tid)
    kind = text(node.get("kind"))
    if not kind:
        raise invalid(f"Topology node '{tid}' must define kind.", f"{where}.kind")
    semantics = node.get("semantics")
    if not isinstance(semantics, dict):
        raise invalid(f"Topology node '{tid}' must define semantics.", f"{where}.semantics")
    lowered = kind.lower()
    if lowered in ("dependency", "sink"):
        for field in RESTRICTED:
            if semantics.get(field) not in (None, ""):
                raise invalid(
                    f"Topology node '{tid}' of kind {kind} must not define semantics.{field}.",
                    f"{where}.semantics.{field}",
                )
    parallelism = semantics.get("parallelism")
    if parallelism is not None:
        if lowered != "servicewithbuffer":
            raise invalid(
                f"Topology node '{tid}' of kind {kind} must not define semantics.parallelism.",
                f"{where}.semantics.parallelism",
            )
        if is_number(parallelism) and float(parallelism) < 1:
            raise invalid(
                f"Topology node '{tid}' semantics.parallelism must be >= 1.",
                f"{where}.semantics.parallelism",
                parallelism,
            )
        ref = text(parallelism)
        if not is_number(parallelism) and ref not in ids and not ref.startswith("file:"):
            raise invalid(
                f"Topology node '{tid}' semantics.parallelism references unknown series '{ref}'.",
                f"{where}.semantics.parallelism",
                ref,
            )
    for field in SEMANTIC_SERIES:
        ref = text(semantics.get(field))
        if ref and ref not in ids:
            raise invalid(
                f"Topology node '{tid}' semantics.{field} references unknown series '{ref}'.",
                f"{where}.semantics.{field}",
                ref,
            )
    kernel = semantics.get("retryKernel")
    if isinstance(kernel, list) and any(
        not is_number(k) or not math.isfinite(float(k)) for k in kernel
    ):
        raise invalid(
            f"Topology node '{tid}' semantics.retryKernel values must be finite numbers.",
            f"{where}.semantics.retryKernel",
        )
    for j, cid in enumerate(node.get("constraints") or []):
        if text(cid).lower() not in constraint_ids:
            raise invalid(
                f"Topology node '{tid}' references unknown constraint '{cid}'.",
                f"{where}.constraints[{j}]",
                cid,
            )
    if simulation:
        arrivals = text(semantics.get("arrivals"))
        served = text(semantics.get("served"))
        if not arrivals:
            raise invalid(
                f"Topology node '{tid}' must define semantics.arrivals in simulation mode.",
                f"{where}.semantics.arrivals",
            )
        if lowered == "dependency" and not served:
            raise invalid(
                f"Topology node '{tid}' must define semantics.served in simulation mode.",
                f"{where}.semantics.served",
            )
        if not served and not text(semantics.get("queueDepth")):
            raise invalid(
                f"Topology node '{tid}' must define semantics.served or semantics.queueDepth "
                "in simulation mode.",
                f"{where}.semantics",
            )


def validate_classes(root: dict[str, Any]) -> None:
    declared: list[str] = []
    for i, cls in enumerate(root.get("classes") or []):
        cid = text(cls.get("id")) if isinstance(cls, dict) else ""
        if not cid:
            raise invalid("Classes must declare a non-empty id.", f"classes[{i}].id")
        if cid in declared:
            raise invalid(f"Duplicate class id '{cid}' detected.", f"classes[{i}].id", cid)
        declared.append(cid)
    traffic = root.get("traffic")
    arrivals = traffic.get("arrivals") if isinstance(traffic, dict) else None
    for i, arrival in enumerate(arrivals or []):
        where = f"traffic.arrivals[{i}]"
        node_id = text(arrival.get("nodeId")) if isinstance(arrival, dict) else ""
        if not node_id:
            raise invalid("Traffic arrivals must declare nodeId.", f"{where}.nodeId")
        pattern = arrival.get("pattern")
        kind = text(pattern.get("kind")) if isinstance(pattern, dict) else ""
        if not kind:
            raise invalid(
                f"Arrival targeting '{node_id}' must declare pattern.kind.", f"{where}.pattern"
            )
        assert isinstance(pattern, dict)
        rate = pattern.get("ratePerBin")
        if kind.lower() == "constant" and (not is_number(rate) or float(str(rate)) < 0):
            raise invalid(
                f"Arrival targeting '{node_id}' with constant pattern must define ratePerBin >= 0.",
                f"{where}.pattern.ratePerBin",
                rate,
            )
        class_id = text(arrival.get("classId"))
        if declared and not class_id:
            raise invalid(
                f"Arrival targeting '{node_id}' must declare classId because classes are defined.",
                f"{where}.classId",
            )
        if class_id and class_id != "*" and class_id not in declared:
            raise invalid(
                f"Class '{class_id}' is not declared under classes.", f"{where}.classId", class_id
            )


def validate_rng(rng: Any) -> None:
    if rng is None:
        return
    if not isinstance(rng, dict):
        raise invalid("RNG kind is required when rng block is specified.", "rng")
    kind = text(rng.get("kind"))
    if not kind:
        raise invalid("RNG kind is required when rng block is specified.", "rng.kind")
    if kind.lower() != RNG_KIND:
        raise invalid(f"Unsupported RNG kind '{kind}'. Expected '{RNG_KIND}'.", "rng.kind", kind)
    if not text(rng.get("seed")):
        raise invalid("RNG seed is required when rng block is specified.", "rng.seed")
