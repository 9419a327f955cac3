"""The run's warnings: FlowTime's ``InvariantAnalyzer`` (§12) over the final series, in its order.

``post_eval_injection``, edge lag, then per topology node (constraints, negatives, pairwise
inequalities, queue recurrence, edge and per-class edge conservation, prerequisite infos,
dispatch, latency, DLQ connectivity), then router diagnostics and class coverage. One
flowdrop-only warning follows: ``topology_shared_arrivals`` for a model upstream cannot run at all
(its edge pass throws), which flowdrop runs and flags instead (docs/templates.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flowdrop.core.engine import classchecks
from flowdrop.core.engine.contributions import Contributions
from flowdrop.core.engine.edgechecks import EdgeChecks, lag_warnings
from flowdrop.core.engine.edges import EdgeSeries, shared_arrivals
from flowdrop.core.engine.evaluation import Evaluation
from flowdrop.core.engine.graph import Graph
from flowdrop.core.engine.nodechecks import NodeChecks
from flowdrop.core.engine.warningtypes import Warning, warning
from flowdrop.core.numerics import FloatArray


def analyze_run(
    graph: Graph,
    series: Mapping[str, FloatArray],
    contributions: Contributions,
    edges: list[EdgeSeries],
) -> list[Warning]:
    """Every warning of the run (``graph.topology`` is the compiled topology)."""
    topology: Mapping[str, Any] = graph.topology
    out = classchecks.post_eval_injection(graph.nodes, series)
    tnodes = [t for t in topology.get("nodes") or [] if isinstance(t, dict)]
    if not tnodes:
        return out
    topology_edges: list[Mapping[str, Any]] = [
        e for e in topology.get("edges") or [] if isinstance(e, dict)
    ]
    out += lag_warnings(topology_edges)
    edge_checks = EdgeChecks(topology_edges, edges)
    nodes = NodeChecks(graph, topology, series, edge_checks)
    for tnode in tnodes:
        out += nodes.check(tnode, contributions.classes)
    out += classchecks.guarded(
        lambda: classchecks.router_diagnostics(contributions),
        "router_diagnostics",
        "router_diagnostics_failed",
        "Router diagnostics failed",
    )
    out += classchecks.coverage_warnings(graph, topology, series, contributions.classes)
    out += shared_arrivals_warnings(topology)
    return out


def run_warnings(evaluation: Evaluation) -> list[Warning]:
    """The warnings of an evaluated model (its graph, final series, class pass and edges)."""
    graph = evaluation.graph if evaluation.graph is not None else None
    if graph is None:
        return []
    contributions = Contributions(evaluation.classes, evaluation.router_diagnostics)
    return analyze_run(graph, evaluation.series, contributions, evaluation.edge_list)


def shared_arrivals_warnings(topology: Mapping[str, Any]) -> list[Warning]:
    out: list[Warning] = []
    for arrivals, owners in shared_arrivals(topology):
        named = ", ".join(f"'{o}'" for o in owners)
        message = (
            f"Topology nodes {named} share semantics.arrivals '{arrivals}'. FlowTime cannot build "
            "this model's edge series (its run fails); flowdrop attributes router routes to the "
            f"first node, '{owners[0]}'."
        )
        out.append(warning(owners[1], "topology_shared_arrivals", message))
    return out
