"""Class rules of FlowTime's ``InvariantAnalyzer`` (§12): router diagnostics, class coverage of
queue outflow/loss and of topology served/errors, and ``post_eval_injection``.

They read the class pass (:mod:`contributions`) over the final totals: a target series that
carries flow but lost some (or all) of its inflow's classes is reported.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

from flowdrop.core.engine.classseries import Classes
from flowdrop.core.engine.contributions import Contributions
from flowdrop.core.engine.graph import Graph
from flowdrop.core.engine.warningtypes import TOLERANCE, Warning, text, warning
from flowdrop.core.numerics import FloatArray


def post_eval_injection(
    model_ids: Iterable[str], series: Mapping[str, FloatArray]
) -> list[Warning]:
    known = {i.lower() for i in model_ids}
    if not known or not series:
        return []
    unknown: list[str] = []
    for key in series:
        if (
            key.strip()
            and key.lower() not in known
            and key.lower() not in (u.lower() for u in unknown)
        ):
            unknown.append(key)
    if not unknown:
        return []
    message = f"Evaluated series contains nodes not present in the model DAG: {', '.join(unknown)}."
    return [warning("engine", "post_eval_injection", message)]


def router_diagnostics(contributions: Contributions) -> list[Warning]:
    return [warning(router, code, message) for router, code, message in contributions.diagnostics]


def _effectively_zero(values: FloatArray | None) -> bool:
    if values is None:
        return False
    return bool(np.isfinite(values).all() and (np.abs(values) <= TOLERANCE).all())


def _check_target(
    owner: str,
    label: str,
    target: str,
    inflow: Classes,
    series: Mapping[str, FloatArray],
    classes: Mapping[str, Classes],
) -> list[Warning]:
    if not target or _effectively_zero(series.get(target)):
        return []
    have = {c.lower() for c in classes.get(target, {})}
    if not have:
        message = (
            f"Class coverage missing for serviceWithBuffer node '{owner}' {label} '{target}'. "
            f"Inflow classes: {', '.join(inflow)}."
        )
        return [warning(owner, f"class_series_missing_{label}", message)]
    missing = [c for c in inflow if c.lower() not in have]
    if not missing:
        return []
    message = (
        f"Class coverage partial for serviceWithBuffer node '{owner}' {label} '{target}'. "
        f"Missing classes: {', '.join(missing)}."
    )
    return [warning(owner, f"class_series_partial_{label}", message)]


def queue_coverage(
    graph: Graph, series: Mapping[str, FloatArray], classes: Mapping[str, Classes]
) -> list[Warning]:
    """Every queue node's outflow and loss against its inflow's classes."""
    out: list[Warning] = []
    for node in graph.nodes.values():
        inflow = classes.get(node.inflow) if node.kind == "queue" and node.inflow else None
        if inflow:
            out += _check_target(node.id, "outflow", node.outflow, inflow, series, classes)
            out += _check_target(node.id, "loss", node.loss or "", inflow, series, classes)
    return out


def topology_coverage(
    topology: Mapping[str, Any], series: Mapping[str, FloatArray], classes: Mapping[str, Classes]
) -> list[Warning]:
    """Topology serviceWithBuffer nodes' served/errors, then every other topology node's."""
    out: list[Warning] = []
    tnodes = [t for t in topology.get("nodes") or [] if isinstance(t, dict)]
    for buffered in (True, False):
        for tnode in tnodes:
            kind = str(tnode.get("kind") or "").lower()
            if (kind == "servicewithbuffer") != buffered:
                continue
            semantics = tnode.get("semantics") or {}
            inflow = classes.get(text(semantics, "arrivals"))
            if not inflow:
                continue
            owner = str(tnode.get("id"))
            out += _check_target(
                owner, "served", text(semantics, "served"), inflow, series, classes
            )
            out += _check_target(
                owner, "errors", text(semantics, "errors"), inflow, series, classes
            )
    return out


def coverage_warnings(
    graph: Graph,
    topology: Mapping[str, Any],
    series: Mapping[str, FloatArray],
    classes: Mapping[str, Classes],
) -> list[Warning]:
    """Queue coverage then topology coverage (each guarded as upstream guards them)."""
    return guarded(
        lambda: queue_coverage(graph, series, classes),
        "serviceWithBuffer",
        "class_coverage_failed",
        "ServiceWithBuffer class coverage diagnostics failed",
    ) + guarded(
        lambda: topology_coverage(topology, series, classes),
        "topology",
        "topology_class_coverage_failed",
        "Topology class coverage diagnostics failed",
    )


def guarded(
    check: Callable[[], list[Warning]], node_id: str, code: str, prefix: str
) -> list[Warning]:
    """Run a diagnostic; an unexpected failure becomes one warning instead of failing the run."""
    try:
        return check()
    except Exception as exc:  # upstream reports any diagnostic failure as data
        return [warning(node_id, code, f"{prefix}: {exc}")]
