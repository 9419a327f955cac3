"""Type checks of the substituted template, before synthesis (FlowTime's deserialisation step).

FlowTime deserialises the YAML into typed C# objects, so a list where a mapping belongs, or text
where a number belongs, fails there as a "YAML parsing error". These checks reproduce that so the
later stages only ever see the shapes they expect.
"""

from __future__ import annotations

from typing import Any

from flowdrop.core.templating.diagnostics import invalid

_NUMERIC_NODE_FIELDS = ("wipLimit",)
_NUMERIC_EDGE_FIELDS = ("weight", "multiplier", "lag")


def _fail(path: str, expected: str, value: Any) -> None:
    raise invalid(f"YAML parsing error: {path} must be {expected}.", path, _show(value))


def _show(value: Any) -> Any:
    return (
        value
        if isinstance(value, int | float | bool | str) or value is None
        else type(value).__name__
    )


def _mapping(value: Any, path: str, *, optional: bool = True) -> dict[str, Any]:
    if value is None and optional:
        return {}
    if not isinstance(value, dict):
        _fail(path, "a mapping", value)
    mapping: dict[str, Any] = value
    return mapping


def _sequence(value: Any, path: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        _fail(path, "a sequence", value)
    sequence: list[Any] = value
    return sequence


def _number(value: Any, path: str, *, integer: bool = False) -> None:
    if value is None:
        return
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if ok and integer:
        ok = float(value).is_integer()
    if not ok:
        _fail(path, "an integer" if integer else "a number", value)


def _numbers(value: Any, path: str) -> None:
    for i, item in enumerate(_sequence(value, path)):
        _number(item, f"{path}[{i}]")
        if item is None:
            _fail(f"{path}[{i}]", "a number", item)


def check_shapes(root: dict[str, Any]) -> None:
    """Raise TEMPLATE_INVALID when a section has the wrong YAML type."""
    for key in ("metadata", "window", "grid", "topology", "traffic", "rng", "provenance"):
        _mapping(root.get(key), key)
    for i, node in enumerate(_sequence(root.get("nodes"), "nodes")):
        where = f"nodes[{i}]"
        node = _mapping(node, where, optional=False)
        _mapping(node.get("metadata"), f"{where}.metadata")
        if node.get("kind") == "const" and "values" in node:
            _numbers(node["values"], f"{where}.values")
        pmf = _mapping(node.get("pmf"), f"{where}.pmf")
        for key in ("values", "probabilities"):
            if key in pmf:
                _numbers(pmf[key], f"{where}.pmf.{key}")
        profile = _mapping(node.get("profile"), f"{where}.profile")
        if "weights" in profile:
            _numbers(profile["weights"], f"{where}.profile.weights")
        _mapping(node.get("inputs"), f"{where}.inputs")
        for j, route in enumerate(_sequence(node.get("routes"), f"{where}.routes")):
            route = _mapping(route, f"{where}.routes[{j}]", optional=False)
            _sequence(route.get("classes"), f"{where}.routes[{j}].classes")
            _number(route.get("weight"), f"{where}.routes[{j}].weight")
        for key in _NUMERIC_NODE_FIELDS:
            _number(node.get(key), f"{where}.{key}")
        _schedule(node.get("dispatchSchedule"), f"{where}.dispatchSchedule")
    topology = _mapping(root.get("topology"), "topology")
    for i, tnode in enumerate(_sequence(topology.get("nodes"), "topology.nodes")):
        where = f"topology.nodes[{i}]"
        tnode = _mapping(tnode, where, optional=False)
        semantics = _mapping(tnode.get("semantics"), f"{where}.semantics")
        for key, value in semantics.items():
            if key == "retryKernel":
                _numbers(value, f"{where}.semantics.retryKernel")
            elif key == "aliases":
                _mapping(value, f"{where}.semantics.aliases")
            elif isinstance(value, list | dict):
                _fail(f"{where}.semantics.{key}", "a scalar", value)
        initial = _mapping(tnode.get("initialCondition"), f"{where}.initialCondition")
        _number(initial.get("queueDepth"), f"{where}.initialCondition.queueDepth")
        _sequence(tnode.get("constraints"), f"{where}.constraints")
        _schedule(tnode.get("dispatchSchedule"), f"{where}.dispatchSchedule")
    for i, edge in enumerate(_sequence(topology.get("edges"), "topology.edges")):
        edge = _mapping(edge, f"topology.edges[{i}]", optional=False)
        for key in _NUMERIC_EDGE_FIELDS:
            _number(edge.get(key), f"topology.edges[{i}].{key}")
    for i, constraint in enumerate(_sequence(topology.get("constraints"), "topology.constraints")):
        constraint = _mapping(constraint, f"topology.constraints[{i}]", optional=False)
        _mapping(constraint.get("semantics"), f"topology.constraints[{i}].semantics")
    for i, cls in enumerate(_sequence(root.get("classes"), "classes")):
        _mapping(cls, f"classes[{i}]", optional=False)
    traffic = _mapping(root.get("traffic"), "traffic")
    for i, arrival in enumerate(_sequence(traffic.get("arrivals"), "traffic.arrivals")):
        arrival = _mapping(arrival, f"traffic.arrivals[{i}]", optional=False)
        _mapping(arrival.get("pattern"), f"traffic.arrivals[{i}].pattern")
    for i, output in enumerate(_sequence(root.get("outputs"), "outputs")):
        _mapping(output, f"outputs[{i}]", optional=False)


def _schedule(value: Any, path: str) -> None:
    schedule = _mapping(value, path)
    _number(schedule.get("periodBins"), f"{path}.periodBins", integer=True)
    _number(schedule.get("phaseOffset"), f"{path}.phaseOffset", integer=True)
