"""Evaluations remembered under the exact content they read (issue #9: fresh replays)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from flowdrop.core.engine import evalcache
from flowdrop.core.engine.evaluation import evaluate
from flowdrop.core.engine.runwarnings import run_warnings
from flowdrop.core.memo import Memo
from flowdrop.core.templating.model import Model
from tests.core.engine.test_evaluation import const, expr, make_model, queue


@pytest.fixture(autouse=True)
def _fresh() -> Iterator[None]:
    evalcache.forget_all()
    yield
    evalcache.forget_all()


@pytest.fixture(name="evaluations")
def _evaluations(monkeypatch: pytest.MonkeyPatch) -> list[Model]:
    """The models evalcache really evaluates."""
    seen: list[Model] = []

    def counting(model: Model, **kwargs: Any) -> Any:
        seen.append(model)
        return evaluate(model, **kwargs)

    monkeypatch.setattr(evalcache, "evaluate", counting)
    return seen


def _model(values: list[float], **provenance: Any) -> Model:
    model = make_model(
        [const("a", values), expr("b", "a * 2"), queue("q", "a", "b")],
        len(values),
        topology={
            "nodes": [
                {
                    "id": "Q",
                    "kind": "serviceWithBuffer",
                    "semantics": {"arrivals": "a", "served": "b", "queueDepth": "q"},
                }
            ]
        },
    )
    model.document["provenance"] = provenance
    return model


def test_the_same_content_is_evaluated_once(evaluations: list[Model]) -> None:
    """Another model object, another provenance: the same content, one evaluation."""
    first, warnings = evalcache.evaluated(_model([1.0, -5.0, 2.0], generatedAt="x"))
    second, again = evalcache.evaluated(_model([1.0, -5.0, 2.0], generatedAt="y"))
    assert len(evaluations) == 1 and second is first
    assert warnings and again == warnings == run_warnings(evaluate(_model([1.0, -5.0, 2.0])))
    assert again is not warnings
    again.append({"code": "mine"})
    again[0]["bins"].append(7)
    assert evalcache.evaluated(_model([1.0, -5.0, 2.0]))[1] == warnings


def test_other_content_is_evaluated_again(evaluations: list[Model]) -> None:
    """A value, a sign of zero, an expression or a seed that differs is another key."""
    base = evalcache.evaluated(_model([1.0, 0.0]))[0]
    assert evalcache.evaluated(_model([1.0, -0.0]))[0] is not base
    assert evalcache.evaluated(_model([1.0, 3.0]))[0]["b"].tolist() == [2.0, 6.0]
    edited = _model([1.0, 0.0])
    edited.document["nodes"][1] = expr("b", "a * 3")
    assert evalcache.evaluated(edited)[0]["b"].tolist() == [3.0, 0.0]
    seeds = {"a": {"x": np.array([1.0, 0.0])}}
    seeded = evalcache.evaluated(_model([1.0, 0.0]), class_seeds=seeds)[0]
    other = {"a": {"x": np.array([0.5, 0.0])}}
    assert evalcache.evaluated(_model([1.0, 0.0]), class_seeds=other)[0] is not seeded
    assert len(evaluations) == 6


def test_a_shared_evaluation_is_read_only() -> None:
    evaluation = evalcache.evaluated(_model([1.0, 2.0]))[0]
    with pytest.raises(ValueError):
        evaluation.series["b"][0] = 9.0
    assert evaluation.graph is not None
    values = evaluation.graph.nodes["a"].values
    assert values is not None and not values.flags.writeable


def test_what_cannot_be_keyed_is_evaluated_every_time(evaluations: list[Model]) -> None:
    """Seeds that are not arrays, a document pickle refuses: correct, just not remembered."""
    for _ in range(2):
        evalcache.evaluated(_model([1.0, 2.0]), class_seeds={"a": {"x": [1.0, 2.0]}})
        odd = _model([1.0, 2.0])
        odd.document["extra"] = lambda: None
        evalcache.evaluated(odd)
    assert len(evaluations) == 4


def test_the_memo_is_bounded(evaluations: list[Model], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(evalcache, "_memo", Memo(2, evalcache.MAX_BYTES))
    for value in (1.0, 2.0, 3.0, 2.0, 3.0, 1.0):
        evalcache.evaluated(_model([value]))
    assert [m.document["nodes"][0]["values"][0] for m in evaluations] == [1.0, 2.0, 3.0, 1.0]


def test_the_memo_is_bounded_by_bytes(
    evaluations: list[Model], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An evaluation over a quarter of the budget is not kept (nor made read-only); the budget
    evicts the least recently used."""
    monkeypatch.setattr(evalcache, "MAX_BYTES", 4 * 1024)  # the quarter-of-the-budget rule
    monkeypatch.setattr(evalcache, "_memo", Memo(evalcache.MAX_ENTRIES, 4 * 1024))
    big = [1.0] * 200  # 3 arrays of 200 floats: 4800 bytes of arrays alone
    for _ in range(2):
        evaluation = evalcache.evaluated(_model(big))[0]
    assert len(evaluations) == 2 and evaluation.series["b"].flags.writeable
    monkeypatch.setattr(evalcache, "MAX_BYTES", 5000)
    monkeypatch.setattr(evalcache, "_memo", Memo(evalcache.MAX_ENTRIES, 5000))
    small = [[float(v)] * 20 for v in range(12)]  # ~1.2 KB each (key and arrays): 4 fit
    for values in [*small, small[0]]:
        evalcache.evaluated(_model(values))
    assert len(evaluations) == 2 + 12 + 1
