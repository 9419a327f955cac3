"""Graph evaluation: queues, feedback, routers, classes and the engine fixtures (§16.2, §16.4)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowdrop.core.engine.evaluation import evaluate
from flowdrop.core.engine.queues import run_queue
from flowdrop.core.errors import ErrorCode, FlowdropError
from flowdrop.core.templating.model import Model


def make_model(
    nodes: list[dict[str, Any]],
    bins: int,
    *,
    topology: dict[str, Any] | None = None,
    traffic: list[dict[str, str]] | None = None,
    classes: list[str] | None = None,
) -> Model:
    document: dict[str, Any] = {
        "schemaVersion": 1,
        "grid": {"bins": bins, "binSize": 60, "binUnit": "minutes"},
    }
    if classes:
        document["classes"] = [{"id": c} for c in classes]
    if traffic:
        document["traffic"] = {"arrivals": traffic}
    document["nodes"] = nodes
    document["outputs"] = [{"series": "*"}]
    document["topology"] = topology or {"nodes": []}
    return Model(document)


def const(node_id: str, values: list[float]) -> dict[str, Any]:
    return {"id": node_id, "kind": "const", "values": values}


def expr(node_id: str, text: str) -> dict[str, Any]:
    return {"id": node_id, "kind": "expr", "expr": text}


def queue(node_id: str, inflow: str, outflow: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": node_id,
        "kind": "serviceWithBuffer",
        "inflow": inflow,
        "outflow": outflow,
        **extra,
    }


def values(model: Model, node_id: str) -> list[float]:
    result: list[float] = evaluate(model)[node_id].tolist()
    return result


@pytest.mark.parametrize("inflow", [[math.nan, 5, math.nan, 3], [math.inf, 5, -math.inf, 3]])
def test_queue_counts_non_finite_inflow_as_zero(inflow: list[float]) -> None:
    """NaNPolicyTests: inflow [NaN,5,NaN,3], outflow 0, seed 0 -> [0,5,5,8]."""
    model = make_model([const("i", inflow), const("o", [0] * 4), queue("q", "i", "o")], 4)
    assert values(model, "q") == [0, 5, 5, 8]


def test_simple_queue_fixture() -> None:
    """topology-simple-queue: in 10, out 3 -> [7,14,21,28]."""
    model = make_model([const("i", [10] * 4), const("o", [3] * 4), queue("q", "i", "o")], 4)
    assert values(model, "q") == [7, 14, 21, 28]


def test_dispatch_schedule_gates_outflow() -> None:
    """topology-dispatch: P=3, in 10, out 5 -> [5,15,25,30,40,50]."""
    schedule = {"kind": "time-based", "periodBins": 3, "phaseOffset": 0}
    nodes = [
        const("i", [10] * 6),
        const("o", [5] * 6),
        queue("q", "i", "o", dispatchSchedule=schedule),
    ]
    assert values(make_model(nodes, 6), "q") == [5, 15, 25, 30, 40, 50]


def test_dispatch_schedule_does_not_mutate_shared_outflow() -> None:
    """Phase0BugTests: a scheduled queue must not change a sibling's view of the outflow."""
    nodes = [
        const("i", [8] * 10),
        const("o", [5] * 10),
        queue("a", "i", "o", dispatchSchedule={"periodBins": 3}),
        queue("b", "i", "o"),
    ]
    result = evaluate(make_model(nodes, 10))
    assert result["b"].tolist() == [3, 6, 9, 12, 15, 18, 21, 24, 27, 30]
    assert result["a"].tolist() == [3, 11, 19, 22, 30, 38, 41, 49, 57, 60]
    assert result["o"].tolist() == [5] * 10


@pytest.mark.parametrize(
    ("inflow", "outflow", "limit", "depth", "overflow"),
    [
        (10, 2, 15, [8, 15, 15, 15], [0, 1, 8, 8]),
        (10, 2, 20, [8, 16, 20, 20], [0, 0, 4, 8]),
        (10, 5, 0, [0, 0, 0, 0], [5, 5, 5, 5]),
    ],
)
def test_wip_limit_caps_depth_and_reports_overflow(
    inflow: float, outflow: float, limit: float, depth: list[float], overflow: list[float]
) -> None:
    """WipLimitTests and topology-wip-limit: the queue is capped, the excess overflows."""
    q, spill = run_queue(0.0, np.full(4, inflow), np.full(4, outflow), None, limit)
    assert (q.tolist(), spill.tolist()) == (depth, overflow)
    nodes = [
        const("i", [inflow] * 4),
        const("o", [outflow] * 4),
        queue("q", "i", "o", wipLimit=limit),
    ]
    assert values(make_model(nodes, 4), "q") == depth


def test_wip_limit_series_uses_non_negative_finite_values() -> None:
    """A limit series: negative or non-finite values mean 0."""
    nodes = [
        const("i", [10] * 3),
        const("o", [0] * 3),
        const("cap", [5, -1, math.nan]),
        queue("q", "i", "o", wipLimitSeries="cap"),
    ]
    assert values(make_model(nodes, 3), "q") == [5, 0, 0]


def test_unsupported_dispatch_kind_is_rejected() -> None:
    """Only time-based schedules parse."""
    nodes = [
        const("i", [1]),
        const("o", [1]),
        queue("q", "i", "o", dispatchSchedule={"kind": "periodic", "periodBins": 3}),
    ]
    with pytest.raises(FlowdropError) as caught:
        evaluate(make_model(nodes, 1))
    assert caught.value.code is ErrorCode.TEMPLATE_INVALID
    assert caught.value.message == "Node q: dispatchSchedule.kind 'periodic' is not supported."


def _backpressure_topology(arrivals: str) -> dict[str, Any]:
    return {
        "nodes": [
            {
                "id": "Buffer",
                "kind": "serviceWithBuffer",
                "semantics": {
                    "arrivals": arrivals,
                    "served": "served",
                    "queueDepth": "queue_depth",
                },
            }
        ]
    }


def test_backpressure_shift_signal() -> None:
    """BackpressureShiftTests (a): effective = raw * SHIFT(signal, 1)."""
    nodes = [
        const("raw", [100] * 6),
        const("served", [20] * 6),
        const("signal", [1, 1, 0.5, 0.2, 0.2, 0.2]),
        expr("effective", "raw * SHIFT(signal, 1)"),
    ]
    result = evaluate(make_model(nodes, 6, topology=_backpressure_topology("effective")))
    assert result["effective"].tolist() == [0, 100, 100, 50, 20, 20]
    assert result["queue_depth"].tolist()[:2] == [0, 80]


def test_feedback_through_shift_is_evaluated_bin_by_bin() -> None:
    """BackpressureShiftTests (b): pressure feeds back into arrivals through SHIFT."""
    nodes = [
        const("raw", [100] * 8),
        const("served", [20] * 8),
        expr("effective", "raw * (1 - SHIFT(pressure, 1))"),
        expr("pressure", "CLAMP(queue_depth / 50, 0, 1)"),
    ]
    result = evaluate(make_model(nodes, 8, topology=_backpressure_topology("effective")))
    assert result["effective"].tolist() == pytest.approx([100, 0, 0, 20, 20, 20, 20, 20], abs=1e-10)
    assert result["queue_depth"].tolist() == pytest.approx(
        [80, 60, 40, 40, 40, 40, 40, 40], abs=1e-10
    )
    assert result["pressure"][0] == pytest.approx(1.0, abs=1e-10)


def test_self_shift_fails_like_the_csharp_engine() -> None:
    """A node SHIFTing itself is not a feedback slice; series mode cannot resolve it (§8.4)."""
    model = make_model([const("a", [1] * 3), expr("q", "SHIFT(q, 1) + a")], 3)
    with pytest.raises(FlowdropError) as caught:
        evaluate(model)
    assert caught.value.message == "Node q: The given key 'q' was not present in the dictionary."


def test_same_bin_cycle_is_rejected() -> None:
    """A cycle without SHIFT cannot be ordered."""
    model = make_model([expr("a", "b + 1"), expr("b", "a + 1")], 2)
    with pytest.raises(FlowdropError) as caught:
        evaluate(model)
    assert caught.value.code is ErrorCode.TEMPLATE_INVALID
    assert caught.value.message == (
        "Graph has a cycle (same-bin algebraic cycle, not resolvable by SHIFT)"
    )


def test_const_length_must_match_grid() -> None:
    """ConstSeriesNode rejects a values array of the wrong length."""
    with pytest.raises(FlowdropError) as caught:
        evaluate(make_model([const("a", [1, 2])], 3))
    assert caught.value.message == "ConstSeriesNode a: values length 2 != grid length 3"


def test_retry_echo_is_synthesised_with_default_kernel() -> None:
    """topology-retry-echo: errors 10, default kernel -> [0,6,9,10,10]."""
    topology = {
        "nodes": [
            {
                "id": "Svc",
                "kind": "service",
                "semantics": {
                    "arrivals": "arr",
                    "served": "srv",
                    "errors": "err",
                    "retryEcho": "retry_echo",
                },
            }
        ]
    }
    nodes = [const("arr", [20] * 5), const("srv", [10] * 5), const("err", [10] * 5)]
    result = evaluate(make_model(nodes, 5, topology=topology))
    assert result["retry_echo"].tolist() == pytest.approx([0, 6, 9, 10, 10], abs=1e-12)


def test_hello_model() -> None:
    """examples/hello: served = demand * 0.8 -> 8 in every bin."""
    model = make_model([const("demand", [10] * 8), expr("served", "demand * 0.8")], 8)
    assert values(model, "served") == [8] * 8


@pytest.mark.parametrize(
    ("pmf", "expected"),
    [
        (([10, 20, 30], [0.5, 0.3, 0.2]), 17.0),
        (([1, 2, 3], [0.2, 0.5, 0.3]), 2.0999999999999996),
        (([4, 8, 12, 16], [0.2, 0.4, 0.3, 0.1]), 9.2),
        (([1, 2, 3, 5, 8], [0.1, 0.2, 0.3, 0.3, 0.1]), 3.7),
        (([1, 3], [2, 2]), 2.0),
    ],
)
def test_pmf_evaluates_to_expected_value(
    pmf: tuple[list[float], list[float]], expected: float
) -> None:
    """PMF nodes are their expected value in every bin (renormalised only when |sum-1| > 1e-6)."""
    node = {"id": "p", "kind": "pmf", "pmf": {"values": pmf[0], "probabilities": pmf[1]}}
    assert values(make_model([node], 3), "p") == [expected] * 3


def test_pmf_duplicate_values_are_rejected() -> None:
    """Duplicate PMF values fail graph construction."""
    node = {"id": "p", "kind": "pmf", "pmf": {"values": [1, 1], "probabilities": [0.5, 0.5]}}
    with pytest.raises(FlowdropError) as caught:
        evaluate(make_model([node], 1))
    assert caught.value.message == "Node p: duplicate PMF value '1'"


def _router(routes: list[dict[str, Any]]) -> dict[str, Any]:
    return {"id": "router", "kind": "router", "inputs": {"queue": "source"}, "routes": routes}


def test_router_class_and_weight_routes() -> None:
    """RouterFlowMaterializerTests: Alpha -> airport, the rest by weight -> general."""
    nodes = [
        const("alpha", [4, 6]),
        const("beta", [6, 4]),
        expr("source", "alpha + beta"),
        _router(
            [
                {"target": "airport_flow", "classes": ["Alpha"]},
                {"target": "general_flow", "weight": 1},
            ]
        ),
        expr("airport_flow", "0"),
        expr("general_flow", "0"),
        expr("downstream", "airport_flow + general_flow"),
    ]
    traffic = [{"nodeId": "alpha", "classId": "Alpha"}, {"nodeId": "beta", "classId": "Beta"}]
    result = evaluate(make_model(nodes, 2, traffic=traffic, classes=["Alpha", "Beta"]))
    assert result["airport_flow"].tolist() == [4, 6]
    assert result["general_flow"].tolist() == [6, 4]
    assert result["downstream"].tolist() == [10, 10]
    assert result.classes["general_flow"]["Beta"].tolist() == [6, 4]


def test_router_weights_split_the_source() -> None:
    """router-weight: 100 split 0.5/0.3/0.2."""
    nodes = [
        const("source", [100]),
        _router([{"target": t, "weight": w} for t, w in (("a", 0.5), ("b", 0.3), ("c", 0.2))]),
        expr("a", "0"),
        expr("b", "0"),
        expr("c", "0"),
    ]
    result = evaluate(make_model(nodes, 1))
    assert [result[n][0] for n in "abc"] == pytest.approx([50, 30, 20], abs=1e-12)


@pytest.mark.parametrize(
    ("routes", "expected"),
    [
        (
            [{"target": "airport", "classes": ["Airport"]}, {"target": "general", "weight": 1}],
            {"airport": 40, "general": 60},
        ),
        (
            [
                {"target": "airport", "classes": ["Airport"]},
                {"target": "general", "weight": 0.75},
                {"target": "overflow", "weight": 0.25},
            ],
            {"airport": 40, "general": 45, "overflow": 15},
        ),
    ],
)
def test_router_class_fixtures(routes: list[dict[str, Any]], expected: dict[str, float]) -> None:
    """router-class (40/60) and router-mixed (40/45/15)."""
    nodes = [
        const("airport_demand", [40]),
        const("other_demand", [60]),
        expr("source", "airport_demand + other_demand"),
        _router(routes),
        *[expr(target, "0") for target in expected],
    ]
    traffic = [
        {"nodeId": "airport_demand", "classId": "Airport"},
        {"nodeId": "other_demand", "classId": "General"},
    ]
    result = evaluate(make_model(nodes, 1, traffic=traffic, classes=["Airport", "General"]))
    assert {t: result[t][0] for t in expected} == expected


def test_class_routes_without_class_data_receive_zero() -> None:
    """Without traffic classes the class route gets 0 and the weight routes split everything."""
    nodes = [
        const("source", [10]),
        _router([{"target": "a", "classes": ["X"]}, {"target": "b", "weight": 1}]),
        expr("a", "5"),
        expr("b", "0"),
    ]
    result = evaluate(make_model(nodes, 1))
    assert (result["a"][0], result["b"][0]) == (0, 10)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=40),
    st.floats(0, 1e6),
    st.integers(1, 5),
)
def test_queue_depth_is_never_negative(flows: list[float], seed: float, period: int) -> None:
    """Whatever the inflow, outflow and schedule, queue depth stays >= 0."""
    bins = len(flows)
    nodes = [
        const("i", flows),
        const("o", list(reversed(flows))),
        queue("q", "i", "o", dispatchSchedule={"periodBins": period}),
    ]
    topology = {
        "nodes": [
            {
                "id": "Q",
                "kind": "serviceWithBuffer",
                "semantics": {"arrivals": "i", "served": "o", "queueDepth": "q"},
                "initialCondition": {"queueDepth": seed},
            }
        ]
    }
    result = evaluate(make_model(nodes, bins, topology=topology))
    assert len(result["q"]) == bins
    assert bool(np.all(result["q"] >= 0))
