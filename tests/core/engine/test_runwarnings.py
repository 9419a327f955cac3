"""Run warnings (FlowTime's InvariantAnalyzer, §12): every rule fires on a model built to trigger
it and stays silent on its near twin that does not.

Each case is a tiny model (const series, one to three topology nodes) run through the same
pipeline a run uses: evaluate, class pass, edge materializer, analyzer.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from flowdrop.core import engine
from flowdrop.core.engine import classchecks, prereqchecks
from flowdrop.core.engine.contributions import build_contributions
from flowdrop.core.engine.edges import EdgeSeries, materialize_edges
from flowdrop.core.engine.evaluation import evaluate
from flowdrop.core.engine.graph import Schedule
from flowdrop.core.engine.runwarnings import analyze_run
from flowdrop.core.engine.warningtypes import SeriesLookup
from flowdrop.core.templating.model import Model
from tests.realtemplates import real_template_paths

BINS = 3


def run_warnings(
    topology: dict[str, Any],
    values: dict[str, list[float]] | None = None,
    *,
    extra_nodes: list[dict[str, Any]] | None = None,
    traffic: list[dict[str, str]] | None = None,
    edges: list[EdgeSeries] | None = None,
    injected: dict[str, list[float]] | None = None,
) -> list[dict[str, Any]]:
    nodes = [{"id": k, "kind": "const", "values": v} for k, v in (values or {}).items()] + list(
        extra_nodes or []
    )
    document: dict[str, Any] = {
        "schemaVersion": 1,
        "grid": {"bins": BINS, "binSize": 1, "binUnit": "hours"},
        "nodes": nodes,
        "topology": topology,
    }
    if traffic:
        document["traffic"] = {"arrivals": traffic}
    evaluation = evaluate(Model(document))
    assert evaluation.graph is not None
    series = dict(evaluation.series)
    series.update({k: np.asarray(v, dtype=np.float64) for k, v in (injected or {}).items()})
    contributions = build_contributions(evaluation.graph, series)
    if edges is None:
        edges = materialize_edges(
            evaluation.graph.topology, evaluation.graph, series, contributions.classes
        )
    return analyze_run(evaluation.graph, series, contributions, edges)


def codes(warnings: list[dict[str, Any]]) -> list[str]:
    return [w["code"] for w in warnings]


def node(node_id: str = "N", kind: str = "service", **semantics: Any) -> dict[str, Any]:
    return {"id": node_id, "kind": kind, "semantics": semantics}


ONES, TWOS, ZEROS = [1.0] * BINS, [2.0] * BINS, [0.0] * BINS
# A service with everything a service needs, so only the rule under test can fire.
FULL = {"capacity": "cap", "processingTimeMsSum": "pt", "servedCount": "sc"}
FULL_VALUES = {"cap": [9.0] * BINS, "pt": ONES, "sc": ONES}

NEGATIVE_FIELDS = [
    ("arrivals", "arrivals_negative"),
    ("served", "served_negative"),
    ("errors", "errors_negative"),
    ("attempts", "attempts_negative"),
    ("failures", "failures_negative"),
    ("exhaustedFailures", "exhausted_failures_negative"),
    ("queueDepth", "queue_negative"),
    ("retryEcho", "retry_echo_negative"),
    ("retryBudgetRemaining", "retry_budget_negative"),
]


@pytest.mark.parametrize(("field", "code"), NEGATIVE_FIELDS)
def test_a_negative_series_is_flagged_and_a_non_negative_one_is_not(field: str, code: str) -> None:
    base = {"arrivals": "a", "served": "a", **FULL}
    bad = run_warnings(
        {"nodes": [node(**{**base, field: "x"})]},
        {"a": [5.0] * BINS, "x": [0.0, -1.0, -2.0], **FULL_VALUES},
    )
    [hit] = [w for w in bad if w["code"] == code]
    assert hit["bins"] == [1, 2] and hit["value"] == -1.0 and hit["nodeId"] == "N"
    good = run_warnings(
        {"nodes": [node(**{**base, field: "x"})]},
        {"a": [5.0] * BINS, "x": [0.0, -1e-7, 0.0], **FULL_VALUES},
    )
    assert code not in codes(good)


PAIRS = [
    # (code, semantics, values that trigger, values that do not)
    (
        "served_exceeds_arrivals",
        {"arrivals": "l", "served": "r"},
        {"l": ONES, "r": [1.0, 3.0, 1.0]},
        {"l": ONES, "r": ONES},
    ),
    (
        "errors_exceed_arrivals",
        {"arrivals": "l", "served": "l", "errors": "r"},
        {"l": ONES, "r": [1.0, 3.0, 1.0]},
        {"l": ONES, "r": ONES},
    ),
    (
        "attempts_below_arrivals",
        {"arrivals": "l", "served": "l", "attempts": "r"},
        {"l": TWOS, "r": [2.0, 1.0, 2.0]},
        {"l": TWOS, "r": TWOS},
    ),
    (
        "failures_exceed_attempts",
        {"arrivals": "l", "served": "l", "attempts": "l", "failures": "r"},
        {"l": ONES, "r": [1.0, 3.0, 1.0]},
        {"l": ONES, "r": ONES},
    ),
    (
        "exhausted_exceeds_failures",
        {"arrivals": "l", "served": "l", "failures": "l", "exhaustedFailures": "r"},
        {"l": ONES, "r": [1.0, 3.0, 1.0]},
        {"l": ONES, "r": ONES},
    ),
    (
        "exhausted_exceeds_errors",
        {"arrivals": "l", "served": "l", "errors": "l", "exhaustedFailures": "r"},
        {"l": ONES, "r": [1.0, 3.0, 1.0]},
        {"l": ONES, "r": ONES},
    ),
]


@pytest.mark.parametrize(("code", "semantics", "bad", "good"), PAIRS, ids=[p[0] for p in PAIRS])
def test_pairwise_inequalities(
    code: str, semantics: dict[str, str], bad: dict[str, list[float]], good: dict[str, list[float]]
) -> None:
    hits = [w for w in run_warnings({"nodes": [node(**semantics, **FULL)]}, {**bad, **FULL_VALUES})
            if w["code"] == code]  # fmt: skip
    assert [w["bins"] for w in hits] == [[1]]
    assert code not in codes(
        run_warnings({"nodes": [node(**semantics, **FULL)]}, {**good, **FULL_VALUES})
    )


def test_served_exceeds_arrivals_reports_the_worst_ratio_and_skips_buffered_nodes() -> None:
    [hit] = [
        w
        for w in run_warnings({"nodes": [node(arrivals="l", served="r", **FULL)]}, {"l": [2.0, 0.0, 2.0], "r": [3.0, 1.0, 2.0], **FULL_VALUES})
        if w["code"] == "served_exceeds_arrivals"
    ]  # fmt: skip
    assert hit["bins"] == [0, 1] and hit["value"] == 1e6  # 1 / tolerance beats 3 / 2
    buffered = node(kind="serviceWithBuffer", arrivals="l", served="r", queueDepth="q")
    values = {"l": ONES, "r": TWOS, "q": ZEROS}
    assert "served_exceeds_arrivals" not in codes(run_warnings({"nodes": [buffered]}, values))


def test_served_above_capacity_times_parallelism() -> None:
    values = {"a": [9.0] * BINS, "s": [5.0] * BINS, "c": TWOS, "pt": ONES, "sc": ONES}
    semantics = {"arrivals": "a", "served": "s", "capacity": "c", "processingTimeMsSum": "pt",
                 "servedCount": "sc"}  # fmt: skip
    bad = run_warnings({"nodes": [node(**semantics, parallelism=2)]}, values)
    assert "served_exceeds_capacity" in codes(bad)
    good = run_warnings({"nodes": [node(**semantics, parallelism=3)]}, values)
    assert "served_exceeds_capacity" not in codes(good)


def test_queue_depth_mismatch_recomputes_the_recurrence_from_the_seed() -> None:
    semantics = {"arrivals": "i", "served": "o", "queueDepth": "q"}
    values = {"i": [5.0] * BINS, "o": TWOS}
    bad = run_warnings(
        {"nodes": [{**node(kind="queue", **semantics), "initialCondition": {"queueDepth": 1}}]},
        {**values, "q": [4.0, 7.0, 9.0]},
    )
    [hit] = [w for w in bad if w["code"] == "queue_depth_mismatch"]
    assert hit["bins"] == [2] and hit["value"] is None
    good = run_warnings(
        {"nodes": [{**node(kind="queue", **semantics), "initialCondition": {"queueDepth": 1}}]},
        {**values, "q": [4.0, 7.0, 10.0]},
    )
    assert "queue_depth_mismatch" not in codes(good)


def two_services(edge: dict[str, Any]) -> dict[str, Any]:
    return {
        "nodes": [node("A", arrivals="a", served="a", **FULL), node("B", arrivals="b", served="b", **FULL)],
        "edges": [edge],
    }  # fmt: skip


def test_incoming_edge_conservation() -> None:
    edge = {"id": "a_b", "from": "A:out", "to": "B:in"}
    bad = run_warnings(two_services(edge), {"a": TWOS, "b": ONES, **FULL_VALUES})
    [hit] = [w for w in bad if w["code"] == "edge_flow_mismatch_incoming"]
    assert hit["message"] == "Arrivals do not match sum of incoming edge flows. Edges: a_b."
    assert hit["nodeId"] == "B" and hit["edgeIds"] == ["a_b"] and hit["value"] == 1.0
    good = run_warnings(two_services(edge), {"a": TWOS, "b": TWOS, **FULL_VALUES})
    assert "edge_flow_mismatch_incoming" not in codes(good)


def test_outgoing_edge_conservation_against_the_edge_series() -> None:
    edge = {"id": "a_b", "from": "A:out", "to": "B:in"}
    values = {"a": TWOS, "b": TWOS, **FULL_VALUES}
    wrong = [EdgeSeries("a_b", "flowVolume", np.ones(BINS))]
    assert "edge_flow_mismatch_outgoing" in codes(
        run_warnings(two_services(edge), values, edges=wrong)
    )
    right = [EdgeSeries("a_b", "flowVolume", np.full(BINS, 2.0))]
    assert "edge_flow_mismatch_outgoing" not in codes(
        run_warnings(two_services(edge), values, edges=right)
    )


def test_per_class_edge_conservation() -> None:
    edge = {"id": "a_b", "from": "A:out", "to": "B:in"}
    traffic = [{"nodeId": "a", "classId": "Gold"}]
    values = {"a": TWOS, **FULL_VALUES}
    topology = {
        "nodes": [node("A", arrivals="a", served="a", **FULL), node("B", arrivals="a", served="a", **FULL)],
        "edges": [edge],
    }  # fmt: skip
    total = EdgeSeries("a_b", "flowVolume", np.full(BINS, 2.0))
    wrong = [total, EdgeSeries("a_b", "flowVolume", np.ones(BINS), "Gold")]
    bad = run_warnings(topology, values, traffic=traffic, edges=wrong)
    [hit] = [w for w in bad if w["code"] == "edge_class_mismatch" and w["nodeId"] == "A"]
    assert hit["message"].startswith(
        "Per-class served does not match outgoing edge flows. Classes: Gold."
    )
    right = [total, EdgeSeries("a_b", "flowVolume", np.full(BINS, 2.0), "Gold")]
    assert "edge_class_mismatch" not in codes(
        run_warnings(topology, values, traffic=traffic, edges=right)
    )


def test_lagged_edge() -> None:
    lagged = run_warnings(
        two_services({"id": "a_b", "from": "A", "to": "B", "lag": 2}),
        {"a": TWOS, "b": TWOS, **FULL_VALUES},
    )
    [hit] = [w for w in lagged if w["code"] == "edge_behavior_violation_lag"]
    assert hit["message"] == (
        "Edge 'a_b' applies a lag of 2 bin(s). Model transit as an explicit node instead of edge behavior."
    )  # fmt: skip
    plain = run_warnings(
        two_services({"id": "a_b", "from": "A", "to": "B"}), {"a": TWOS, "b": TWOS, **FULL_VALUES}
    )
    assert "edge_behavior_violation_lag" not in codes(plain)


INFO_CASES = [
    # (code, topology node that triggers, one that does not)
    ("missing_capacity_series", node(arrivals="a", served="a"), node(arrivals="a", served="a", capacity="a")),
    ("missing_served_series", node(arrivals="a", served=""), node(arrivals="a", served="a")),
    ("missing_processing_time_series", node(arrivals="a", served="a"), node(arrivals="a", served="a", processingTimeMsSum="a")),
    ("missing_served_count_series", node(arrivals="a", served="a"), node(arrivals="a", served="a", servedCount="a")),
    ("missing_queue_depth_series", node(arrivals="a", served="a", queueDepth="nope"), node(arrivals="a", served="a", queueDepth="a")),
    ("missing_dependency_arrivals", node(kind="dependency", arrivals="nope", served="a"), node(kind="dependency", arrivals="a", served="a")),
    ("missing_dependency_served", node(kind="dependency", arrivals="a", served=""), node(kind="dependency", arrivals="a", served="a")),
    ("capacity_all_zero", node(arrivals="z", served="z", capacity="z"), node(arrivals="z", served="z", capacity="a")),
]  # fmt: skip


@pytest.mark.parametrize(("code", "bad", "good"), INFO_CASES, ids=[c[0] for c in INFO_CASES])
def test_prerequisite_infos(code: str, bad: dict[str, Any], good: dict[str, Any]) -> None:
    values = {"a": TWOS, "z": ZEROS}
    hits = [w for w in run_warnings({"nodes": [bad]}, values) if w["code"] == code]
    assert len(hits) == 1 and hits[0]["severity"] == "info" and hits[0]["bins"] == []
    assert code not in codes(run_warnings({"nodes": [good]}, values))


def test_dependency_effort_edges_and_retry_pressure() -> None:
    dep = node("D", kind="dependency", arrivals="a", served="a", errors="a")
    caller = node("C", arrivals="a", served="a", **FULL)
    effort = {"id": "c_d", "from": "C:out", "to": "D:in", "type": "effort"}
    values = {"a": TWOS, **FULL_VALUES}
    alone = codes(run_warnings({"nodes": [caller, dep]}, values))
    assert "dependency_missing_effort_edges" in alone
    assert "dependency_retry_pressure_missing" not in alone  # needs effort edges to judge
    no_attempts = codes(run_warnings({"nodes": [caller, dep], "edges": [effort]}, values))
    assert "dependency_missing_effort_edges" not in no_attempts
    assert "dependency_retry_pressure_missing" in no_attempts
    caller_with_attempts = node("C", arrivals="a", served="a", attempts="a", **FULL)
    ok = codes(run_warnings({"nodes": [caller_with_attempts, dep], "edges": [effort]}, values))
    assert "dependency_retry_pressure_missing" not in ok


def test_max_attempts_without_exhausted_or_budget_series() -> None:
    values = {"a": TWOS, **FULL_VALUES}
    bad = codes(
        run_warnings({"nodes": [node(arrivals="a", served="a", maxAttempts=3, **FULL)]}, values)
    )
    assert {"missing_exhausted_failures_series", "missing_retry_budget_series"} <= set(bad)
    good = codes(run_warnings({"nodes": [node(arrivals="a", served="a", maxAttempts=3, exhaustedFailures="a",
                                              retryBudgetRemaining="a", **FULL)]}, values))  # fmt: skip
    assert not {"missing_exhausted_failures_series", "missing_retry_budget_series"} & set(good)


def queue_model(
    served: list[float], queue: list[float], schedule: dict[str, Any] | None
) -> list[str]:
    semantics = {"arrivals": "i", "served": "o", "queueDepth": "q"}
    tnode: dict[str, Any] = {"id": "Q", "kind": "queue", "semantics": semantics}
    extra = []
    if schedule is not None:
        extra = [{"id": "Q", "kind": "serviceWithBuffer", "inflow": "i", "outflow": "o",
                  "dispatchSchedule": schedule}]  # fmt: skip
    return codes(
        run_warnings({"nodes": [tnode]}, {"i": TWOS, "o": served, "q": queue}, extra_nodes=extra)
    )


def test_queue_latency_infos() -> None:
    assert "queue_latency_unreported" in queue_model(ZEROS, TWOS, None)
    assert "queue_latency_unreported" not in queue_model(ONES, TWOS, None)
    gated = queue_model(ZEROS, TWOS, {"periodBins": 2})
    assert "queue_latency_gate_closed" in gated and "queue_latency_unreported" not in gated
    assert "queue_latency_gate_closed" not in queue_model(ONES, TWOS, {"periodBins": 2})


def test_dispatch_schedule_sanity() -> None:
    never = queue_model(ZEROS, TWOS, {"periodBins": 2})
    assert "dispatch_never_releases" in never
    assert "dispatch_never_releases" not in queue_model(ONES, TWOS, {"periodBins": 2})
    missing_cap = queue_model(ONES, TWOS, {"periodBins": 2, "capacitySeries": "i"})
    assert "dispatch_capacity_missing" not in missing_cap
    topology = {
        "nodes": [
            {
                "id": "Q",
                "kind": "queue",
                "semantics": {"arrivals": "i", "served": "gone", "queueDepth": "q"},
            }
        ]
    }
    extra = [{"id": "Q", "kind": "serviceWithBuffer", "inflow": "i", "outflow": "i",
              "dispatchSchedule": {"periodBins": 2, "capacitySeries": "i"}}]  # fmt: skip
    found = codes(run_warnings(topology, {"i": TWOS, "q": TWOS}, extra_nodes=extra))
    assert "dispatch_missing_served_series" in found and "dispatch_capacity_missing" not in found


def test_dispatch_capacity_missing_when_the_series_is_absent() -> None:
    tnode = {
        "id": "Q",
        "kind": "queue",
        "semantics": {"arrivals": "i", "served": "o", "queueDepth": "q"},
    }
    extra = [{"id": "Q", "kind": "serviceWithBuffer", "inflow": "i", "outflow": "o",
              "dispatchSchedule": {"periodBins": 2, "capacitySeries": "cap"}}]  # fmt: skip
    values = {"i": TWOS, "o": ONES, "q": TWOS}
    found = codes(
        run_warnings(
            {"nodes": [tnode]},
            values,
            extra_nodes=[*extra, {"id": "cap", "kind": "const", "values": ONES}],
        )
    )
    assert "dispatch_capacity_missing" not in found
    # A capacity series the run did not produce (absent from the analyzed series) is reported.
    lookup = SeriesLookup({"i": np.ones(BINS)})
    warned = prereqchecks.dispatch(lookup, "Q", Schedule(2, 0, "cap"), np.ones(BINS), np.ones(BINS))
    assert [w["code"] for w in warned] == ["dispatch_capacity_missing"]


def test_dlq_connectivity() -> None:
    src = node("S", arrivals="a", served="a", **FULL)
    dlq = node("D", kind="dlq", arrivals="a", served="a", queueDepth="a")
    after = node("T", arrivals="a", served="a", **FULL)
    values = {"a": TWOS, **FULL_VALUES}
    bad = codes(run_warnings({"nodes": [src, dlq, after], "edges": [
        {"id": "s_d", "from": "S:out", "to": "D:in"}, {"id": "d_t", "from": "D:out", "to": "T:in"}]}, values))  # fmt: skip
    assert {"dlq_non_terminal_inbound", "dlq_non_terminal_outbound"} <= set(bad)
    good = codes(run_warnings({"nodes": [src, dlq, after], "edges": [
        {"id": "s_d", "from": "S:errors", "to": "D:in", "type": "terminal", "measure": "errors"},
        {"id": "d_t", "from": "D:out", "to": "T:in", "type": "terminal"}]}, values))  # fmt: skip
    assert not {"dlq_non_terminal_inbound", "dlq_non_terminal_outbound"} & set(good)


def test_constraint_series_availability() -> None:
    constrained = {**node(arrivals="a", served="a", **FULL), "constraints": ["db"]}
    values = {"a": TWOS, **FULL_VALUES}
    bad = run_warnings({"nodes": [constrained], "constraints": [
        {"id": "db", "semantics": {"arrivals": "gone", "served": "gone"}}]}, values)  # fmt: skip
    assert codes(bad)[:2] == ["constraint_missing_arrivals", "constraint_missing_served"]
    good = run_warnings({"nodes": [constrained], "constraints": [
        {"id": "db", "semantics": {"arrivals": "a", "served": "a"}}]}, values)  # fmt: skip
    assert not {"constraint_missing_arrivals", "constraint_missing_served"} & set(codes(good))


ROUTER_NODES = [
    {"id": "gold", "kind": "const", "values": TWOS},
    {"id": "blue", "kind": "const", "values": ONES},
    {"id": "total", "kind": "expr", "expr": "gold + blue"},
    {"id": "to_gold", "kind": "expr", "expr": "0"},
    {"id": "to_rest", "kind": "expr", "expr": "0"},
]
TRAFFIC = [{"nodeId": "gold", "classId": "Gold"}, {"nodeId": "blue", "classId": "Blue"}]


def routed(routes: list[dict[str, Any]]) -> list[str]:
    router = {"id": "R", "kind": "router", "inputs": {"queue": "total"}, "routes": routes}
    return codes(run_warnings({"nodes": [node("X", arrivals="total", served="total", **FULL)]},
                              FULL_VALUES, extra_nodes=[*ROUTER_NODES, router], traffic=TRAFFIC))  # fmt: skip


def test_router_missing_class_route() -> None:
    assert "router_missing_class_route" in routed([{"target": "to_gold", "classes": ["Gold"]}])
    both = routed(
        [{"target": "to_gold", "classes": ["Gold"]}, {"target": "to_rest", "classes": ["Blue"]}]
    )
    assert "router_missing_class_route" not in both
    assert "router_missing_class_route" not in routed(
        [{"target": "to_gold", "classes": ["Gold"]}, {"target": "to_rest"}]
    )


def test_router_class_leakage() -> None:
    # Two class routes to one target: the second overwrites the first's class split upstream.
    leaky = routed(
        [{"target": "to_gold", "classes": ["Gold"]}, {"target": "to_gold", "classes": ["Blue"]}]
    )
    assert "router_class_leakage" in leaky
    assert "router_class_leakage" not in routed(
        [{"target": "to_gold", "classes": ["Gold"]}, {"target": "to_rest"}]
    )


COVERAGE_CASES = ["outflow", "loss", "served", "errors"]


@pytest.mark.parametrize("label", COVERAGE_CASES)
def test_class_coverage_missing_and_partial(label: str) -> None:
    from flowdrop.core.engine.graph import Graph, Node

    queue = Node("Q", "queue", inflow="in", outflow="out", loss="loss")
    graph = Graph(BINS, {"Q": queue}, ["Q"], [], {}, [], {})
    topology: dict[str, Any] = {"nodes": [{"id": "T", "kind": "serviceWithBuffer",
                                           "semantics": {"arrivals": "in", "served": "out", "errors": "loss"}}]}  # fmt: skip
    if label in ("outflow", "loss"):
        topology = {"nodes": []}
    series = {k: np.ones(BINS) for k in ("in", "out", "loss")}
    inflow = {"Gold": np.ones(BINS), "Blue": np.zeros(BINS)}
    target = "out" if label in ("outflow", "served") else "loss"
    missing = classchecks.coverage_warnings(
        graph if label in ("outflow", "loss") else Graph(BINS, {}, [], [], {}, [], {}),
        topology,
        series,
        {"in": inflow},
    )
    assert f"class_series_missing_{label}" in codes(missing)
    partial = classchecks.coverage_warnings(graph if label in ("outflow", "loss") else Graph(BINS, {}, [], [], {}, [], {}), topology, series,
                                            {"in": inflow, target: {"Gold": np.ones(BINS)}})  # fmt: skip
    assert f"class_series_partial_{label}" in codes(partial)
    full = classchecks.coverage_warnings(graph if label in ("outflow", "loss") else Graph(BINS, {}, [], [], {}, [], {}), topology, series,
                                         {"in": inflow, "out": inflow, "loss": inflow})  # fmt: skip
    assert not [c for c in codes(full) if label in c]


def test_class_pass_failures_become_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    """An unexpected failure in a class diagnostic is reported, not raised (upstream's *_failed)."""
    topology = {"nodes": [node(arrivals="a", served="a", **FULL)]}
    values = {"a": TWOS, **FULL_VALUES}
    assert not {"class_coverage_failed", "topology_class_coverage_failed", "router_diagnostics_failed"} & set(
        codes(run_warnings(topology, values))
    )  # fmt: skip

    def boom(*_: Any, **__: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(classchecks, "queue_coverage", boom)
    monkeypatch.setattr(classchecks, "topology_coverage", boom)
    monkeypatch.setattr(classchecks, "router_diagnostics", boom)
    found = run_warnings(topology, values)
    failed = {w["code"]: w for w in found if w["code"].endswith("_failed")}
    assert set(failed) == {
        "router_diagnostics_failed",
        "class_coverage_failed",
        "topology_class_coverage_failed",
    }
    assert (
        failed["class_coverage_failed"]["message"]
        == "ServiceWithBuffer class coverage diagnostics failed: boom"
    )


def test_post_eval_injection() -> None:
    topology = {"nodes": [node(arrivals="a", served="a", **FULL)]}
    values = {"a": TWOS, **FULL_VALUES}
    found = run_warnings(topology, values, injected={"ghost": ONES})
    assert found[0]["code"] == "post_eval_injection" and found[0]["nodeId"] == "engine"
    assert (
        found[0]["message"]
        == "Evaluated series contains nodes not present in the model DAG: ghost."
    )
    assert "post_eval_injection" not in codes(run_warnings(topology, values))


def test_shared_arrivals_is_run_and_flagged() -> None:
    """Two topology nodes with one arrivals series: upstream throws; flowdrop warns (flowdrop-only)."""
    shared = [
        node("A", arrivals="a", served="a", **FULL),
        node("B", arrivals="a", served="a", **FULL),
    ]
    found = run_warnings({"nodes": shared}, {"a": TWOS, **FULL_VALUES})
    [hit] = [w for w in found if w["code"] == "topology_shared_arrivals"]
    assert hit["nodeId"] == "B" and "'A', 'B' share semantics.arrivals 'a'" in hit["message"]
    apart = [
        node("A", arrivals="a", served="a", **FULL),
        node("B", arrivals="pt", served="pt", **FULL),
    ]
    assert "topology_shared_arrivals" not in codes(
        run_warnings({"nodes": apart}, {"a": TWOS, **FULL_VALUES})
    )


def test_warning_shape_and_order() -> None:
    """run.json fields in upstream's order; lag before node rules; node rules in topology order."""
    topology = two_services({"id": "a_b", "from": "A", "to": "B", "lag": 1})
    found = run_warnings(topology, {"a": [-1.0, 2.0, 2.0], "b": TWOS, **FULL_VALUES})
    assert list(found[0]) == ["code", "message", "nodeId", "bins", "value", "severity", "edgeIds"]
    assert codes(found)[:2] == ["edge_behavior_violation_lag", "arrivals_negative"]


REAL_TEMPLATE_WARNINGS = {
    # docs/templates.md, "Run warnings per real template": keep the two in step.
    "dependency-constraints-attached": [],
    "dependency-constraints-minimal": [],
    "it-document-processing-continuous": ["missing_exhausted_failures_series", "missing_retry_budget_series"] * 7,
    "it-system-microservices": ["edge_flow_mismatch_incoming"],
    "loop-parity-template": ["missing_capacity_series", "missing_processing_time_series", "missing_served_count_series"],
    "manufacturing-line": ["edge_flow_mismatch_incoming"],
    "network-reliability": ["edge_flow_mismatch_incoming"],
    "supply-chain-incident-retry": ["missing_capacity_series", "topology_shared_arrivals"],
    "supply-chain-multi-tier": ["missing_exhausted_failures_series", "missing_retry_budget_series"],
    "supply-chain-multi-tier-classes": ["missing_exhausted_failures_series", "missing_retry_budget_series"],
    "transportation-basic": ["edge_flow_mismatch_incoming"] * 3,
    "transportation-basic-classes": [],
    "warehouse-picker-waves": [],
}  # fmt: skip


@pytest.mark.parametrize("path", real_template_paths(), ids=lambda p: p.stem)
def test_real_template_warnings_at_defaults(path: Path, tmp_path: Path) -> None:
    info = engine.simulate(engine.load_template(path), {}, tmp_path / "run", rng_seed=7)
    assert codes(info.warnings) == REAL_TEMPLATE_WARNINGS[path.stem]
    manifest = json.loads(
        (tmp_path / "run/model/telemetry/telemetry-manifest.json").read_text(encoding="utf-8")
    )
    assert manifest["warnings"] == [
        {k: w[k] for k in ("code", "message", "nodeId", "bins", "severity")} for w in info.warnings
    ]


def test_per_class_edge_coverage_gap() -> None:
    """A class the node carries but no edge does: edge_class_partial_coverage (not _mismatch)."""
    edge = {"id": "a_b", "from": "A:out", "to": "B:in"}
    traffic = [{"nodeId": "g", "classId": "Gold"}, {"nodeId": "b", "classId": "Blue"}]
    extra = [{"id": "a", "kind": "expr", "expr": "g + b"}]
    values = {"g": ONES, "b": ONES, **FULL_VALUES}
    topology = {
        "nodes": [
            node("A", arrivals="a", served="a", **FULL),
            node("B", arrivals="a", served="a", **FULL),
        ],
        "edges": [edge],
    }
    total = EdgeSeries("a_b", "flowVolume", np.full(BINS, 2.0))
    gold_only = [total, EdgeSeries("a_b", "flowVolume", np.ones(BINS), "Gold")]
    found = run_warnings(topology, values, extra_nodes=extra, traffic=traffic, edges=gold_only)
    [hit] = [w for w in found if w["nodeId"] == "A" and w["code"].startswith("edge_class")]
    assert hit["code"] == "edge_class_partial_coverage"
    assert hit["message"] == (
        "Per-class served does not match outgoing edge flows. Classes: Blue. Edges: a_b."
    )
    both = [*gold_only, EdgeSeries("a_b", "flowVolume", np.ones(BINS), "Blue")]
    clean = run_warnings(topology, values, extra_nodes=extra, traffic=traffic, edges=both)
    assert not [w for w in clean if w["code"].startswith("edge_class")]
