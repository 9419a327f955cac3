"""The queue kernel (§9.4): one recurrence for series mode, feedback slices, classes, invariants."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from flowdrop.core.engine.evaluation import evaluate
from flowdrop.core.engine.queues import (
    QueueState,
    dispatch_mask,
    gate_bin,
    gate_series,
    normalise_limit,
    run_queue,
)
from tests.core.engine.test_evaluation import const, expr, make_model, queue

FEEDBACK = "raw + 0 * SHIFT(q, 1)"  # puts q in a SHIFT feedback slice without changing values


def _depth(inflow: float, outflow: float, bins: int, **extra: object) -> list[float]:
    depth, _ = run_queue(0.0, np.full(bins, inflow), np.full(bins, outflow), **extra)  # type: ignore[arg-type]
    return depth.tolist()


def test_reference_examples() -> None:
    """§9.4: [7,14,21,28]; WIP 15 gives [8,15,15,15]; NaN inflow counts as 0."""
    assert _depth(10, 3, 4) == [7, 14, 21, 28]
    assert _depth(10, 2, 4, limit=15.0) == [8, 15, 15, 15]
    nan_in = np.array([math.nan, 5, math.nan, 3])
    assert run_queue(0.0, nan_in, np.zeros(4))[0].tolist() == [0, 5, 5, 8]


def test_dispatch_example_gates_the_outflow() -> None:
    """§9.4: P=3, I=10, O=5 gives O'=[5,0,0,5,0,0] and Q=[5,15,25,30,40,50]."""
    gated = gate_series(np.full(6, 5.0), dispatch_mask(6, 3, 0), None)
    assert gated.tolist() == [5, 0, 0, 5, 0, 0]
    assert run_queue(0.0, np.full(6, 10.0), gated)[0].tolist() == [5, 15, 25, 30, 40, 50]


@pytest.mark.parametrize(("phase", "first"), [(0, 0), (4, 1), (-1, 2)])
def test_dispatch_phase_is_normalised(phase: int, first: int) -> None:
    assert dispatch_mask(6, 3, phase).nonzero()[0].tolist()[0] == first


def test_series_mode_lets_the_outflow_pass_a_non_finite_capacity() -> None:
    """C#'s series path: ``min(O, C)`` only where C is finite."""
    capacity = np.array([math.nan, 2.0, math.inf])
    assert gate_series(np.full(3, 5.0), np.ones(3, dtype=bool), capacity).tolist() == [5, 2, 5]


def test_bin_mode_counts_a_non_finite_capacity_as_zero() -> None:
    """C#'s feedback path: a non-finite C is 0 — "a minor divergence" kept on purpose (§9.4)."""
    assert [gate_bin(5.0, True, c) for c in (math.nan, 2.0, math.inf)] == [0, 2, 0]
    assert gate_bin(5.0, False, 9.0) == 0
    assert gate_bin(5.0, True, None) == 5


def _capacity_model(feedback: bool) -> list[float]:
    schedule = {"kind": "time-based", "periodBins": 1, "capacitySeries": "cap"}
    nodes = [
        const("raw", [10] * 4),
        const("o", [5] * 4),
        const("cap", [math.nan] * 4),
        expr("i", FEEDBACK if feedback else "raw"),
        queue("q", "i", "o", dispatchSchedule=schedule),
    ]
    result: list[float] = evaluate(make_model(nodes, 4))["q"].tolist()
    return result


def test_the_two_modes_differ_on_a_non_finite_capacity_end_to_end() -> None:
    assert _capacity_model(feedback=False) == [5, 10, 15, 20]  # series: outflow passes
    assert _capacity_model(feedback=True) == [10, 20, 30, 40]  # bin: capacity counts as 0


@pytest.mark.parametrize("feedback", [False, True], ids=["series", "slice"])
@pytest.mark.parametrize(
    ("limit", "expected"),
    [({"wipLimit": 15}, [8, 15, 15, 15]), ({"wipLimitSeries": "cap"}, [8, 0, 3, 3])],
)
def test_wip_limit_behaves_the_same_in_both_modes(
    feedback: bool, limit: dict[str, object], expected: list[float]
) -> None:
    """flowdrop's own wipLimit: a queue inside a feedback slice is capped like any other."""
    nodes = [
        const("raw", [10] * 4),
        const("o", [2] * 4),
        const("cap", [9, -1, 3, 3]),
        expr("i", FEEDBACK if feedback else "raw"),
        queue("q", "i", "o", **limit),
    ]
    assert evaluate(make_model(nodes, 4))["q"].tolist() == expected


def test_queue_state_steps_like_the_series_recurrence() -> None:
    state = QueueState(1.0)
    overflows = [state.step(i, o, 0.0, 4.0) for i, o in [(5, 1), (math.nan, 1), (0, 9)]]
    assert (state.depth, overflows) == (0.0, [1.0, 0.0, 0.0])


@pytest.mark.parametrize(("raw", "applied"), [(3.0, 3.0), (-2.0, 0.0), (math.nan, 0.0)])
def test_limits_are_non_negative_and_finite(raw: float, applied: float) -> None:
    assert normalise_limit(raw) == applied


@given(
    st.lists(
        st.tuples(
            st.floats(-1e6, 1e6), st.floats(-1e6, 1e6), st.floats(-1e6, 1e6), st.floats(0, 1e6)
        ),
        max_size=30,
    ),
    st.floats(0, 1e6),
    st.booleans(),
)
def test_the_inlined_recurrence_is_queue_state_step_bin_by_bin(
    rows: list[tuple[float, float, float, float]], initial: float, limited: bool
) -> None:
    """run_queue's inlined loop gives exactly what stepping a QueueState gives."""
    ins, outs, losses, caps = (
        (np.asarray(c, dtype=np.float64) for c in zip(*rows, strict=True))
        if rows
        else (np.zeros(0),) * 4
    )
    depth, overflow = run_queue(initial, ins, outs, losses, caps if limited else None)
    state = QueueState(initial)
    for t in range(len(rows)):
        assert overflow[t] == state.step(ins[t], outs[t], losses[t], caps[t] if limited else None)
        assert depth[t] == state.depth


def _stepwise(
    initial: float, inflow: list[float], outflow: list[float], loss: list[float]
) -> bytes:
    """The recurrence one bin at a time with QueueState (the reference the sums must match)."""
    state, depth = QueueState(initial), []
    for i, o, lost in zip(inflow, outflow, loss, strict=True):
        state.step(i, o, lost)
        depth.append(state.depth)
    return np.asarray(depth, dtype=np.float64).tobytes()


_SAMPLES = st.sampled_from([0.0, -0.0, 1.0, 0.1, 1e-300, 1e300, -2.5, math.nan, math.inf]) | (
    st.floats(-100, 100)
)
_INITIAL = st.sampled_from([0.0, -0.0, 9.2, -1.0, math.nan, math.inf]) | st.floats(0, 1e6)


@given(
    _INITIAL,
    st.lists(st.tuples(_SAMPLES, _SAMPLES, _SAMPLES), max_size=40),
    st.booleans(),
)
def test_run_queue_sums_match_the_bin_by_bin_recurrence(
    initial: float, rows: list[tuple[float, float, float]], with_loss: bool
) -> None:
    """numpy's running sums (restarted where the queue empties, then a loop after a few
    restarts) give the stepwise depths bit for bit, signed zeros and non-finite inputs too."""
    inflow, outflow, loss = (
        (list(column) for column in zip(*rows, strict=True)) if rows else ([], [], [])
    )
    if not with_loss:
        loss = [0.0] * len(inflow)
    depth, overflow = run_queue(
        initial,
        np.asarray(inflow, dtype=np.float64),
        np.asarray(outflow, dtype=np.float64),
        np.asarray(loss, dtype=np.float64) if with_loss else None,
    )
    assert depth.tobytes() == _stepwise(initial, inflow, outflow, loss)
    assert not overflow.any()


def test_run_queue_that_keeps_emptying_matches_the_recurrence() -> None:
    """Thirty busy periods: past the numpy restarts the rest goes bin by bin, same bits."""
    inflow = [0.7, 0.0, 0.0, 0.1] * 30
    outflow = [0.0, 0.3, 0.5, 0.0] * 30
    loss = [0.01, 0.0, 0.0, 0.0] * 30
    depth, _ = run_queue(0.0, np.asarray(inflow), np.asarray(outflow), np.asarray(loss))
    assert depth.tobytes() == _stepwise(0.0, inflow, outflow, loss)
    assert (depth == 0.0).sum() >= 30
