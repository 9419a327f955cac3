"""The class pass (upstream's ClassContributionBuilder, §9.8) over final totals.

Every node the pass reaches gets per-class series: expressions built from classed inputs (the
``served_airport``/``*_dlq_served_zero`` family), queues run per class, router targets take their
routed classes, and queue outflow/loss and topology served/errors inherit the inflow's mix.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from flowdrop.core.engine import evaluation as evaluation_module
from flowdrop.core.engine.contributions import Contributions, build_contributions
from flowdrop.core.engine.evaluation import Evaluation, evaluate
from flowdrop.core.templating.model import Model, generate_model
from flowdrop.core.templating.templatecache import load_template
from tests.realtemplates import real_template_paths


def classes_of(
    nodes: list[dict[str, Any]],
    traffic: list[tuple[str, str]],
    topology: dict[str, Any] | None = None,
    bins: int = 4,
    seeds: dict[str, dict[str, np.ndarray[Any, Any]]] | None = None,
) -> dict[str, dict[str, list[float]]]:
    document: dict[str, Any] = {
        "schemaVersion": 1,
        "grid": {"bins": bins, "binSize": 1, "binUnit": "hours"},
        "nodes": nodes,
        "traffic": {"arrivals": [{"nodeId": n, "classId": c} for n, c in traffic]},
    }
    if topology:
        document["topology"] = topology
    evaluation = evaluate(Model(document))
    assert evaluation.graph is not None
    result = build_contributions(evaluation.graph, evaluation.series, seeds)
    recomputed = build_contributions(evaluation.graph, evaluation.series, seeds, reuse=False)
    assert _bits(result) == _bits(recomputed)
    return {n: {c: v.tolist() for c, v in per.items()} for n, per in result.classes.items()}


def _bits(result: Contributions) -> Any:
    """Everything the pass answers, in its order, values as bytes (signed zeros, NaN bits)."""
    classes = [(n, [(c, v.tobytes()) for c, v in per.items()]) for n, per in result.classes.items()]
    return classes, result.diagnostics


def const(node_id: str, values: list[float]) -> dict[str, Any]:
    return {"id": node_id, "kind": "const", "values": values}


def expr(node_id: str, text: str) -> dict[str, Any]:
    return {"id": node_id, "kind": "expr", "expr": text}


TWO_CLASSES = [const("a", [4, 4, 4, 4]), const("b", [1, 1, 1, 1])]
TAGS = [("a", "Airport"), ("b", "Industrial")]


def test_an_expression_built_from_classed_inputs_gets_class_series() -> None:
    """served = MIN(cap, a + b): the binding capacity scales the demand's mix (upstream's
    served_airport case); a literal-only node gets nothing."""
    got = classes_of(
        [
            *TWO_CLASSES,
            const("cap", [10, 2, 10, 10]),
            expr("demand", "a + b"),
            expr("served", "MIN(cap, demand)"),
            expr("zero", "0"),
        ],
        TAGS,
    )
    assert got["demand"] == {"Airport": [4.0] * 4, "Industrial": [1.0] * 4}
    assert got["served"]["Airport"] == [4.0, 1.6, 4.0, 4.0]
    assert got["served"]["Industrial"] == [1.0, 0.4, 1.0, 1.0]
    assert "zero" not in got and "cap" not in got


def test_products_divisions_and_conv_follow_upstream() -> None:
    got = classes_of(
        [
            *TWO_CLASSES,
            const("rate", [0.5, 0.5, 0.5, 0.5]),
            expr("scaled", "(a + b) * rate"),
            expr("share", "(a + b) / 5"),
            expr("echo", "CONV(a + b, [0.0, 1.0])"),
        ],
        TAGS,
    )
    assert got["scaled"] == {"Airport": [2.0] * 4, "Industrial": [0.5] * 4}
    assert got["share"] == {"Airport": [0.8] * 4, "Industrial": [0.2] * 4}
    assert got["echo"] == {"Airport": [0.0, 4.0, 4.0, 4.0], "Industrial": [0.0, 1.0, 1.0, 1.0]}


def test_a_queue_runs_per_class_with_the_zero_seed_quirk() -> None:
    """A zero initial depth with positive bin-0 inflow starts from that inflow (upstream quirk)."""
    got = classes_of(
        [
            *TWO_CLASSES,
            expr("inflow", "a + b"),
            const("out", [5, 5, 5, 5]),
            {"id": "q", "kind": "serviceWithBuffer", "inflow": "inflow", "outflow": "out"},
        ],
        TAGS,
    )
    total = [0.0, 0.0, 0.0, 0.0]  # the queue's own total: 5 in, 5 out
    assert [got["q"]["Airport"][i] + got["q"]["Industrial"][i] for i in range(4)] == total
    # the outflow is not a class node of its own, so it inherits the inflow's mix
    assert got["out"] == {"Airport": [4.0] * 4, "Industrial": [1.0] * 4}


def test_router_targets_take_their_routed_classes() -> None:
    """S = alpha[4,6] + beta[6,4]; Alpha -> airport, the rest by weight -> general (§9.5)."""
    got = classes_of(
        [
            const("alpha", [4, 6]),
            const("beta", [6, 4]),
            expr("s", "alpha + beta"),
            expr("airport", "0"),
            expr("general", "0"),
            {
                "id": "R",
                "kind": "router",
                "inputs": {"queue": "s"},
                "routes": [{"target": "airport", "classes": ["Alpha"]}, {"target": "general"}],
            },
        ],
        [("alpha", "Alpha"), ("beta", "Beta")],
        bins=2,
    )
    assert got["airport"] == {"Alpha": [4.0, 6.0]}
    assert got["general"] == {"Beta": [6.0, 4.0]}
    assert got["R"] == {"Alpha": [4.0, 6.0], "Beta": [6.0, 4.0]}


def test_topology_served_and_errors_inherit_the_arrivals_mix() -> None:
    topology = {"nodes": [{"id": "Stage", "kind": "serviceWithBuffer",
                           "semantics": {"arrivals": "inflow", "served": "srv", "errors": "err"}}]}  # fmt: skip
    got = classes_of(
        [
            *TWO_CLASSES,
            expr("inflow", "a + b"),
            const("srv", [3, 3, 3, 3]),
            const("err", [1, 1, 1, 1]),
        ],
        TAGS,
        topology,
    )
    assert got["srv"] == {"Airport": [2.4] * 4, "Industrial": [0.6] * 4}
    assert got["err"]["Airport"] == [0.8] * 4


def test_seeds_replace_a_nodes_split_and_flow_downstream() -> None:
    seeds = {"a": {"Airport": np.array([1.0] * 4), "Industrial": np.array([3.0] * 4)}}
    got = classes_of([*TWO_CLASSES, expr("twice", "a * 2")], TAGS, seeds=seeds)
    assert got["a"] == {"Airport": [1.0] * 4, "Industrial": [3.0] * 4}
    assert got["twice"] == {"Airport": [2.0] * 4, "Industrial": [6.0] * 4}


def test_no_tags_no_classes() -> None:
    assert classes_of([*TWO_CLASSES, expr("c", "a + b")], []) == {}


def _evaluation_bits(evaluation: Evaluation) -> Any:
    def arrays(table: dict[str, Any]) -> list[Any]:
        return [(k, v.tobytes() if hasattr(v, "tobytes") else arrays(v)) for k, v in table.items()]

    classes = [(n, arrays(per)) for n, per in evaluation.classes.items()]
    edges = (arrays(evaluation.edges), arrays(evaluation.edge_classes))
    return arrays(evaluation.series), classes, edges, evaluation.router_diagnostics


@pytest.mark.parametrize("path", real_template_paths(), ids=lambda p: p.stem)
def test_reusing_unchanged_nodes_on_a_rewalk_changes_nothing(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both class passes of a real template (before and after router overrides), its edges
    and diagnostics, are the same bits when every node is recomputed on every walk."""
    model = generate_model(load_template(path), {}, mode="simulation")
    fast = _evaluation_bits(evaluate(model))
    slow_pass = functools.partial(build_contributions, reuse=False)
    monkeypatch.setattr(evaluation_module, "build_contributions", slow_pass)
    assert fast == _evaluation_bits(evaluate(model))


def test_a_node_reading_a_later_one_through_shift_is_recomputed_on_the_rewalk() -> None:
    """The first walk reads the later node's totals, a re-walk its stored classes: a read of
    a series stored since, so never reused. The queue's outflow inherits the inflow's mix,
    so the pass walks again (classes_of compares the answer with the recomputing pass)."""
    got = classes_of(
        [
            *TWO_CLASSES,
            const("cap", [3, 3, 3, 3]),
            expr("demand", "a + b"),
            expr("echo", "demand + 0.5 * SHIFT(late, 1)"),
            expr("late", "echo * 1"),
        ],
        TAGS,
        topology={
            "nodes": [
                {
                    "id": "Q",
                    "kind": "serviceWithBuffer",
                    "semantics": {"arrivals": "echo", "served": "cap"},
                },
            ]
        },
    )
    assert set(got["cap"]) == {"Airport", "Industrial"}
