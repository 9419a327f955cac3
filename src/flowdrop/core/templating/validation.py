"""``TemplateValidator``: structural rules over a substituted template, first failure wins (§3).

The order is upstream's: generator, metadata, window, grid, nodes, outputs, topology, classes and
traffic, rng. Messages are FlowTime's; details carry the offending path and value.
"""

from __future__ import annotations

import math
import re
from typing import Any

from flowdrop.core.templating.diagnostics import invalid, is_number, text
from flowdrop.core.templating.expressions import ExpressionError, parse, references
from flowdrop.core.templating.topologyvalidation import (
    validate_classes,
    validate_rng,
    validate_topology,
)

SEMVER = re.compile(r"^\d+\.\d+\.\d+(-[0-9A-Za-z\.-]+)?$")
NODE_KINDS = ("const", "pmf", "expr", "serviceWithBuffer", "router")


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
    validate_topology(root.get("topology"), node_ids, root)
    validate_classes(root)
    validate_rng(root.get("rng"))


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
