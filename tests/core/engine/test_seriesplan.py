"""Which series a run writes and in which order (§10.6), pinned for every real template.

For each real template at its defaults and at two in-range parameter sets, ``series/index.json``
lists exactly the pinned series, in the pinned order (``tests/golden/series_lists.json``; a change
meant to alter the list regenerates it with ``FLOWDROP_REGEN_GOLDEN=1`` and says why). The pins
were produced by the port of upstream's class pass, edge materializer and writer order; the
structural rules are asserted independently below, and values are spot-checked against the
reference's worked examples.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from flowdrop.core import engine
from flowdrop.core.engine.rundocs import resolve_series, series_id
from flowdrop.core.engine.seriesplan import plan_series
from flowdrop.core.templating.template import ParameterSpec
from tests.realtemplates import real_template_paths

GOLDEN = Path(__file__).resolve().parents[2] / "golden" / "series_lists.json"


def in_range(spec: ParameterSpec, fraction: float) -> Any:
    """A value inside the parameter's declared range (or near its default without one)."""
    numeric = spec.type in ("integer", "number") and not spec.array_of
    # The grid stays at its defaults: array parameters are sized to it.
    if not numeric or spec.default is None or spec.name in ("bins", "binSize"):
        return None
    default = float(spec.default)
    if spec.minimum is not None and spec.maximum is not None:
        value = spec.minimum + (spec.maximum - spec.minimum) * fraction
    else:
        value = default * (0.5 + fraction)
    return round(value) if spec.type == "integer" else round(value, 4)


def parameter_sets(template: engine.Template) -> dict[str, dict[str, Any]]:
    sets: dict[str, dict[str, Any]] = {"defaults": {}}
    for name, fraction in (("low", 0.25), ("high", 0.75)):
        chosen = {s.name: in_range(s, fraction) for s in template.parameters}
        sets[name] = {k: v for k, v in chosen.items() if v is not None}
    return sets


def index_entries(run_dir: Path) -> list[dict[str, Any]]:
    index = json.loads((run_dir / "series" / "index.json").read_text(encoding="utf-8-sig"))
    entries: list[dict[str, Any]] = index["series"]
    return entries


def simulate(path: Path, parameters: dict[str, Any], out: Path) -> engine.RunInfo:
    return engine.simulate(engine.load_template(path), parameters, out, rng_seed=7)


@pytest.mark.parametrize("path", real_template_paths(), ids=lambda p: p.stem)
def test_series_lists_match_the_pins(path: Path, tmp_path: Path) -> None:
    template = engine.load_template(path)
    seen = {}
    for name, parameters in parameter_sets(template).items():
        info = simulate(path, parameters, tmp_path / name)
        entries = index_entries(tmp_path / name)
        ids = [e["id"] for e in entries]
        assert ids == info.series_ids
        assert_writer_order(entries)
        seen[name] = ids
    golden = json.loads(GOLDEN.read_text()) if GOLDEN.exists() else {}
    if os.environ.get("FLOWDROP_REGEN_GOLDEN"):
        golden[path.stem] = seen
        GOLDEN.write_text(json.dumps(golden, indent=1, sort_keys=True) + "\n")
    assert seen == golden[path.stem]


def assert_writer_order(entries: list[dict[str, Any]]) -> None:
    """Node series first (each DEFAULT then its classes), then edges (each total then classes)."""
    kinds = [e["kind"] for e in entries]
    assert kinds == sorted(kinds, key=lambda k: k == "edge")
    current = None
    for entry in entries:
        sid, cls = entry["id"], entry["class"]
        name = sid.rsplit("@", 2)[0]
        if cls == "DEFAULT":
            current = name
        else:
            assert name == current, f"{sid} does not follow its DEFAULT series"


@pytest.fixture(scope="module")
def by_stem() -> dict[str, Path]:
    paths = {p.stem: p for p in real_template_paths()}
    if not paths:
        pytest.skip("real FlowTime templates not found")
    return paths


def test_exhausted_failures_edges_write_no_failures_volume(
    by_stem: dict[str, Path], tmp_path: Path
) -> None:
    """The seven DLQ edges of it-document-processing-continuous measure exhaustedFailures."""
    info = simulate(by_stem["it-document-processing-continuous"], {}, tmp_path / "run")
    assert not [s for s in info.series_ids if "_dlq_failuresVolume" in s]
    per_class = [s for s in info.series_ids if "@INTAKE_DLQ_SERVED_ZERO@" in s]
    assert per_class == [
        "intake_dlq_served_zero@INTAKE_DLQ_SERVED_ZERO@DEFAULT",
        "intake_dlq_served_zero@INTAKE_DLQ_SERVED_ZERO@Invoice",
        "intake_dlq_served_zero@INTAKE_DLQ_SERVED_ZERO@Contract",
        "intake_dlq_served_zero@INTAKE_DLQ_SERVED_ZERO@Claim",
    ]


def test_retry_volume_only_with_positive_retries(by_stem: dict[str, Path], tmp_path: Path) -> None:
    info = simulate(by_stem["network-reliability"], {}, tmp_path / "on")
    assert len([s for s in info.series_ids if "_retryVolume@" in s]) == 1
    off = simulate(by_stem["network-reliability"], {"retryRate": 0}, tmp_path / "off")
    assert not [s for s in off.series_ids if "_retryVolume@" in s]


def test_classed_expressions_get_class_series(by_stem: dict[str, Path], tmp_path: Path) -> None:
    info = simulate(by_stem["transportation-basic-classes"], {}, tmp_path / "run")
    assert "served_airport@SERVED_AIRPORT@Airport" in info.series_ids
    assert "airport_attempts@AIRPORT_ATTEMPTS@Airport" in info.series_ids
    sc = simulate(by_stem["supply-chain-multi-tier-classes"], {}, tmp_path / "sc")
    assert "restock_losses@RESTOCK_LOSSES@Retail" in sc.series_ids


def test_transportation_basic_edge_mismatch_values(
    by_stem: dict[str, Path], tmp_path: Path
) -> None:
    """Upstream's own record of this template's run (gap G-0032): three incoming mismatches with
    worst differences 1.89, 9.46 and 7.57 at the lines the hub queue feeds by equal edge weights."""
    info = simulate(by_stem["transportation-basic"], {}, tmp_path / "run")
    found = {w["nodeId"]: w for w in info.warnings if w["code"] == "edge_flow_mismatch_incoming"}
    assert sorted(found) == ["LineAirport", "LineDowntown", "LineIndustrial"]
    assert round(found["LineAirport"]["value"], 2) == 1.89
    assert round(found["LineDowntown"]["value"], 2) == 9.46
    assert round(found["LineIndustrial"]["value"], 2) == 7.57
    assert found["LineAirport"]["message"] == (
        "Arrivals do not match sum of incoming edge flows. Edges: queue_to_airport."
    )
    run = engine.read_run(tmp_path / "run")
    hub = run.node_series("hub_dispatch")
    edge = run.series["edge_queue_to_airport_flowVolume@EDGE_QUEUE_TO_AIRPORT_FLOWVOLUME@DEFAULT"]
    assert np.array_equal(edge, hub * (1 / 3))  # weight 1 of 3, as upstream's 2.522 = 7.567 / 3


def test_plan_puts_classes_after_their_total_and_skips_all_nan_classes() -> None:
    context = {"a": np.ones(2), "b": np.ones(2)}
    classes = {"a": {"X": np.ones(2), "Y": np.full(2, np.nan)}}
    planned = plan_series(["b", "a"], context, classes, [])
    assert [p.series_id for p in planned] == ["b@B@DEFAULT", "a@A@DEFAULT", "a@A@X"]
    assert series_id("hub_queue", "Gold") == "hub_queue@HUB_QUEUE@Gold"
    assert resolve_series([], context) == ["a", "b"]
