"""``TemplateValidator``: structural rules over a substituted template, first failure wins (§3).

The order is upstream's: generator, metadata, window, grid, nodes, outputs, topology, classes and
traffic, rng. Messages are FlowTime's; details carry the offending path and value.
"""

from __future__ import annotations

import math
import re
from typing import Any

from flowdrop.core.errors import ErrorCode, FlowdropError
from flowdrop.core.expressions import ExpressionError, parse, references

SEMVER = re.compile(r"^\d+\.\d+\.\d+(-[0-9A-Za-z\.-]+)?$")
NODE_KINDS = ("const", "pmf", "expr", "serviceWithBuffer", "router")
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


def invalid(message: str, path: str | None = None, value: Any = None) -> FlowdropError:
    details: dict[str, Any] = {}
    if path is not None:
        details["path"] = path
    if value is not None:
        details["value"] = value if isinstance(value, int | float | bool) else str(value)
    return FlowdropError(ErrorCode.TEMPLATE_INVALID, message, **details)


def text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def validate_template(root: dict[str, Any]) -> None:
    """Raise TEMPLATE_INVALID on the first rule the template breaks."""
    generator = text(root.get("generator") or "flowtime-sim")
    if not generator.lower().startswith("flowtime-sim"):
        raise invalid("Template generator must be 'flowtime-sim'.", "generator", generator)
    _metadata(root.get("metadata"))
    _window(root.get("window"))
    _grid(root.get("grid"))
    node_ids = _nodes(root.get("nodes"), root)
    _outputs(root.get("outputs"), node_ids)
    _topology(root.get("topology"), node_ids, root)
    _classes(root)
    _rng(root.get("rng"))


def _metadata(metadata: Any) -> None:
    if not isinstance(metadata, dict):
        raise invalid("Template metadata is required.", "metadata")
    for key in ("id", "title", "version"):
        if not text(metadata.get(key)):
            raise invalid(f"Template metadata.{key} is required.", f"metadata.{key}")
    version = text(metadata.get("version"))
    if not SEMVER.match(version):
        raise invalid(
            f"Template metadata.version '{version}' must be a semantic version (e.g., 1.0.0).",
            "metadata.version",
            version,
        )


def _window(window: Any) -> None:
    if not isinstance(window, dict) or not text(window.get("start")):
        raise invalid("Template window.start is required.", "window.start")
    timezone = text(window.get("timezone"))
    if not timezone:
        raise invalid("Template window.timezone is required.", "window.timezone")
    if timezone.upper() != "UTC":
        raise invalid("Template window.timezone must be 'UTC'.", "window.timezone", timezone)


def _grid(grid: Any) -> None:
    if not isinstance(grid, dict):
        raise invalid("Template grid is required.", "grid")
    bins, size = grid.get("bins"), grid.get("binSize")
    if not isinstance(bins, int) or isinstance(bins, bool) or bins <= 0:
        raise invalid("Grid bins must be greater than zero.", "grid.bins", bins)
    if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
        raise invalid("Grid binSize must be greater than zero.", "grid.binSize", size)
    if not text(grid.get("binUnit")):
        raise invalid("Grid binUnit is required (e.g., 'minutes').", "grid.binUnit")


def _nodes(nodes: Any, root: dict[str, Any]) -> set[str]:
    if not isinstance(nodes, list) or not nodes:
        raise invalid("Template must define at least one node.", "nodes")
    ids: set[str] = set()
    for i, node in enumerate(nodes):
        node_id = text(node.get("id")) if isinstance(node, dict) else ""
        if not node_id:
            raise invalid("Template nodes must declare an id.", f"nodes[{i}].id")
        if node_id in ids:
            raise invalid(f"Duplicate node id '{node_id}' detected.", f"nodes[{i}].id", node_id)
        ids.add(node_id)
    for i, node in enumerate(nodes):
        _node(i, node, ids)
    return ids


def _node(i: int, node: dict[str, Any], ids: set[str]) -> None:
    node_id = text(node.get("id"))
    kind = text(node.get("kind"))
    where = f"nodes[{i}]"
    if kind not in NODE_KINDS:
        raise invalid(
            f"Node '{node_id}' has unsupported kind '{kind}'.", f"{where}.kind", kind or None
        )
    if kind == "const":
        values = node.get("values")
        if not values and not text(node.get("source")):
            raise invalid(f"Const node '{node_id}' must define values.", f"{where}.values")
    elif kind == "pmf":
        _pmf(node_id, node.get("pmf"), where)
    elif kind == "expr":
        _expr(node_id, node, ids, where)
    elif kind == "serviceWithBuffer":
        inflow, outflow = text(node.get("inflow")), text(node.get("outflow"))
        if not inflow or not outflow:
            raise invalid(
                f"ServiceWithBuffer node '{node_id}' must define 'inflow' and 'outflow'.", where
            )
        for field in ("inflow", "outflow", "loss"):
            ref = text(node.get(field))
            if ref and ref not in ids:
                raise invalid(
                    f"ServiceWithBuffer node '{node_id}' {field} references unknown node '{ref}'.",
                    f"{where}.{field}",
                    ref,
                )
    else:
        _router(node_id, node, ids, where)


def _pmf(node_id: str, pmf: Any, where: str) -> None:
    if not isinstance(pmf, dict):
        raise invalid(f"PMF node '{node_id}' must define a pmf section.", f"{where}.pmf")
    values, probabilities = pmf.get("values"), pmf.get("probabilities")
    if not isinstance(values, list) or not values:
        raise invalid(
            f"PMF node '{node_id}' must define at least one value.", f"{where}.pmf.values"
        )
    if not isinstance(probabilities, list) or not probabilities:
        raise invalid(
            f"PMF node '{node_id}' must define probabilities.", f"{where}.pmf.probabilities"
        )
    if len(values) != len(probabilities):
        raise invalid(
            f"PMF node '{node_id}' values and probabilities must have the same length.",
            f"{where}.pmf.probabilities",
            len(probabilities),
        )
    for j, item in enumerate([*values, *probabilities]):
        if not is_number(item) or not math.isfinite(float(item)):
            key = "values" if j < len(values) else "probabilities"
            raise invalid(
                f"PMF node '{node_id}' {key} must be numeric.", f"{where}.pmf.{key}", item
            )
    total = 0.0
    for p in probabilities:
        total += float(p)
    if abs(total - 1.0) > 1e-10:
        raise invalid(
            f"PMF node '{node_id}' probabilities must sum to 1.0 (received {total}).",
            f"{where}.pmf.probabilities",
            total,
        )
    if any(float(p) < 0 for p in probabilities):
        raise invalid(
            f"PMF node '{node_id}' probabilities must be non-negative.",
            f"{where}.pmf.probabilities",
        )


def _expr(node_id: str, node: dict[str, Any], ids: set[str], where: str) -> None:
    raw = node.get("expr")
    if raw is None or text(raw) == "":
        raise invalid(f"Expression node '{node_id}' must define expr.", f"{where}.expr")
    source = raw if isinstance(raw, str) else str(raw)
    try:
        parsed = parse(source)
    except ExpressionError as exc:
        raise invalid(
            f"Expression node '{node_id}' has an invalid expression: {exc}", f"{where}.expr", source
        ) from None
    referenced, _ = references(parsed)
    for name in referenced:
        if name not in ids:
            raise invalid(
                f"Expression node '{node_id}' references unknown node '{name}'.",
                f"{where}.expr",
                name,
            )
    declared = node.get("dependencies")
    if isinstance(declared, list) and declared:
        declared_set = {text(d) for d in declared}
        missing = [r for r in referenced if r not in declared_set]
        if missing:
            raise invalid(
                f"Expression node '{node_id}' is missing dependencies for: {', '.join(missing)}.",
                f"{where}.dependencies",
            )
        unused = sorted(declared_set - set(referenced))
        if unused:
            raise invalid(
                f"Expression node '{node_id}' declares unused dependencies: {', '.join(unused)}.",
                f"{where}.dependencies",
            )


def _router(node_id: str, node: dict[str, Any], ids: set[str], where: str) -> None:
    inputs = node.get("inputs")
    queue = text(inputs.get("queue")) if isinstance(inputs, dict) else ""
    if not queue:
        raise invalid(f"Router node '{node_id}' must declare inputs.queue.", f"{where}.inputs")
    if queue not in ids:
        raise invalid(
            f"Router node '{node_id}' references unknown queue '{queue}'.",
            f"{where}.inputs.queue",
            queue,
        )
    routes = node.get("routes")
    if not isinstance(routes, list) or not routes:
        raise invalid(f"Router node '{node_id}' must declare at least one route.", where)
    for j, route in enumerate(routes):
        target = text(route.get("target")) if isinstance(route, dict) else ""
        if not target:
            raise invalid(f"Router node '{node_id}' has a route without a target.", where)
        if target not in ids:
            raise invalid(
                f"Router node '{node_id}' route target '{target}' does not match a defined node.",
                f"{where}.routes[{j}].target",
                target,
            )
        classes = route.get("classes")
        if not classes and route.get("weight") is None:
            raise invalid(
                f"Router node '{node_id}' route targeting '{target}' must specify classes or weight.",
                f"{where}.routes[{j}]",
            )


def _outputs(outputs: Any, ids: set[str]) -> None:
    if not isinstance(outputs, list) or not outputs:
        raise invalid("Template must define at least one output.", "outputs")
    for i, output in enumerate(outputs):
        series = text(output.get("series")) if isinstance(output, dict) else ""
        if not series:
            raise invalid(
                "Output series must be specified (use '*' for wildcard).", f"outputs[{i}].series"
            )
        if series != "*" and series not in ids:
            raise invalid(
                f"Output references unknown series '{series}'.", f"outputs[{i}].series", series
            )


def _topology(topology: Any, ids: set[str], root: dict[str, Any]) -> None:
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


def _classes(root: dict[str, Any]) -> None:
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


def _rng(rng: Any) -> None:
    if rng is None:
        return
    if not isinstance(rng, dict):
        raise invalid("RNG kind is required when rng block is specified.", "rng")
    kind = text(rng.get("kind"))
    if not kind:
        raise invalid("RNG kind is required when rng block is specified.", "rng.kind")
    if kind.lower() != "pcg32":
        raise invalid(f"Unsupported RNG kind '{kind}'. Expected 'pcg32'.", "rng.kind", kind)
    if not text(rng.get("seed")):
        raise invalid("RNG seed is required when rng block is specified.", "rng.seed")
