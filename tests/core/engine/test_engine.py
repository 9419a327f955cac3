"""End to end over the real FlowTime templates: load, validate, simulate, read back."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowdrop.core import engine
from flowdrop.core.engine import (
    evaluate,
    generate_model,
    load_template,
    read_run,
    simulate,
    validate_template,
)
from flowdrop.core.hashing import deterministic_run_id, input_hash
from tests.realtemplates import real_template_paths

TEMPLATES = real_template_paths()
NOW = datetime(2026, 5, 4, 7, 16, 46, tzinfo=UTC)
BOM = b"\xef\xbb\xbf"
RUN_FILES = (
    "run.json",
    "manifest.json",
    "series/index.json",
    "spec.yaml",
    "model/model.yaml",
    "model/metadata.json",
    "model/provenance.json",
)


def in_range_overrides(template: engine.Template) -> dict[str, Any]:
    """Move every ranged numeric parameter to a different in-range value."""
    overrides: dict[str, Any] = {}
    for spec in template.parameters:
        if spec.type not in ("integer", "number") or spec.minimum is None or spec.maximum is None:
            continue
        value = spec.minimum + (spec.maximum - spec.minimum) * 0.75
        overrides[spec.name] = round(value) if spec.type == "integer" else value
    bins = overrides.get("bins")
    for spec in template.parameters:
        if spec.type == "array" and isinstance(spec.default, list) and bins is not None:
            overrides[spec.name] = [spec.default[i % len(spec.default)] for i in range(bins)]
    return overrides


def assert_complete_run(run_dir: Path, bins: int) -> None:
    for name in RUN_FILES:
        data = (run_dir / name).read_bytes()
        assert data.startswith(BOM), name
    assert (run_dir / "spec.yaml").read_bytes() == (run_dir / "model/model.yaml").read_bytes()
    run = read_run(run_dir)
    assert run.entries, "a run writes at least one series"
    for entry in run.entries:
        csv = (run_dir / entry["path"]).read_bytes()
        lines = csv[len(BOM) :].decode().split("\n")
        assert lines[0] == "bin_index,value" and lines[-1] == ""
        assert len(lines) == bins + 2 and entry["points"] == bins
    assert run.run["modelHash"] == run.manifest["modelHash"] == run.metadata["modelHash"]


@pytest.mark.parametrize("path", TEMPLATES, ids=[p.stem for p in TEMPLATES])
def test_real_template_simulates_at_defaults(path: Path, tmp_path: Path) -> None:
    """Every real template loads, validates and writes a complete canonical run at defaults."""
    template = load_template(path)
    model = validate_template(template)
    info = simulate(template, {}, tmp_path / "run", rng_seed=123, now=NOW)
    assert_complete_run(info.path, model.grid.bins)
    hash_value = input_hash(template.id, template.version, "simulation", {}, {}, "pcg32", 123)
    assert info.run_id == deterministic_run_id(template.id, hash_value)
    run = read_run(info.path)
    evaluation = evaluate(model)
    for entry in run.entries:
        node = entry["id"].split("@")[0]
        if entry["kind"] == "flow" and entry["class"] == "DEFAULT":
            np.testing.assert_array_equal(run.series[entry["id"]], evaluation[node])


@pytest.mark.parametrize("path", TEMPLATES, ids=[p.stem for p in TEMPLATES])
def test_real_template_simulates_with_in_range_overrides(path: Path, tmp_path: Path) -> None:
    """Overrides within the declared ranges still produce a complete, finite run."""
    template = load_template(path)
    overrides = in_range_overrides(template)
    model = generate_model(template, overrides)
    evaluation = evaluate(model)
    assert all(len(v) == model.grid.bins for v in evaluation.values())
    info = simulate(template, overrides, tmp_path / "run", rng_seed=7, now=NOW)
    assert_complete_run(info.path, model.grid.bins)


def test_warehouse_picker_waves_matches_derived_example(flowtime_templates: Path) -> None:
    """§16.6 at default parameters, exact."""
    evaluation = evaluate(
        generate_model(load_template(flowtime_templates / "warehouse-picker-waves.yaml"), {})
    )
    expected = {
        "order_demand": [120, 135, 150, 190, 210, 220, 205, 185, 170, 160, 150, 140],
        "intake_capacity": [130, 150, 160, 200, 210, 210, 195, 185, 175, 165, 155, 150],
        "received_orders": [120, 135, 150, 190, 210, 210, 195, 185, 170, 160, 150, 140],
        "picker_wave_gate": [1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0],
        "picker_wave_buildup": [120, 255, 405, 595, 685, 760, 805, 800, 760, 710, 665, 620],
        "picker_wave_release": [80, 0, 0, 0, 80, 0, 0, 0, 80, 0, 0, 0],
        "pack_processed": [70, 0, 0, 0, 70, 0, 0, 0, 70, 0, 0, 0],
        "intake_queue": [0, 0, 0, 0, 0, 10, 20, 20, 20, 20, 20, 20],
        "picker_wave_queue": [40, 175, 325, 515, 645, 855, 1050, 1235, 1325, 1485, 1635, 1775],
        "pack_staging_queue_queue": [10, 10, 10, 10, 20, 20, 20, 20, 30, 30, 30, 30],
    }
    assert {k: evaluation[k].tolist() for k in expected} == expected


def test_loop_parity_totals_and_classes(flowtime_templates: Path, tmp_path: Path) -> None:
    """§16.6 loop-parity: totals and per-class Retail/Wholesale, also as written CSVs."""
    template = load_template(flowtime_templates / "loop-parity-template.yaml")
    info = simulate(template, {}, tmp_path / "run", rng_seed=424242, now=NOW)
    run = read_run(info.path)
    totals = [13, 15, 15, 17, 17, 19, 19, 21, 21, 23, 23, 25]
    retail = list(range(10, 22))
    wholesale = [3, 4] * 6
    for node in ("total_arrivals", "total_served"):
        assert run.node_series(node).tolist() == totals
        classes = run.classes_of(node)
        assert classes["Retail"].tolist() == retail
        assert classes["Wholesale"].tolist() == wholesale
    assert run.run["classCoverage"] == "full"
    assert run.node_series("total_errors").tolist() == [0] * 12


def test_same_inputs_give_identical_csvs_and_run_id(
    flowtime_templates: Path, tmp_path: Path
) -> None:
    """Determinism: byte-identical CSVs and the same deterministic run id, whatever the clock."""
    template = load_template(flowtime_templates / "transportation-basic-classes.yaml")
    first = simulate(template, {"bins": 48}, tmp_path / "a", rng_seed=5, now=NOW)
    second = simulate(
        template, {"bins": 48}, tmp_path / "b", rng_seed=5, now=datetime(2030, 1, 1, tzinfo=UTC)
    )
    third = simulate(template, {"bins": 48}, tmp_path / "c", rng_seed=5, now=NOW)
    assert first.run_id == second.run_id
    for sid in first.series_ids:
        a = (first.path / "series" / f"{sid}.csv").read_bytes()
        assert a == (second.path / "series" / f"{sid}.csv").read_bytes()
    for name in (*RUN_FILES, "model/telemetry/telemetry-manifest.json"):
        assert (first.path / name).read_bytes() == (third.path / name).read_bytes(), name
    assert (
        simulate(template, {"bins": 48}, tmp_path / "d", rng_seed=6, now=NOW).run_id != first.run_id
    )


@settings(max_examples=15, deadline=None)
@given(
    wave=st.integers(10, 500),
    pack=st.integers(10, 300),
    period=st.integers(1, 24),
    phase=st.integers(0, 24),
)
def test_warehouse_evaluation_is_deterministic_and_sized(
    wave: int, pack: int, period: int, phase: int
) -> None:
    """Any in-range parameters: two evaluations agree exactly, every series has `bins` points."""
    if not TEMPLATES:
        pytest.skip("FlowTime templates not available")
    path = next(p for p in TEMPLATES if p.stem == "warehouse-picker-waves")
    template = load_template(path)
    params = {
        "waveCapacity": wave,
        "packCapacity": pack,
        "wavePeriodBins": period,
        "wavePhaseOffset": phase,
    }
    first = evaluate(generate_model(template, params))
    second = evaluate(generate_model(template, params))
    assert list(first) == list(second)
    for key in first:
        assert len(first[key]) == 12
        np.testing.assert_array_equal(first[key], second[key])
    for queue in ("intake_queue", "picker_wave_queue", "pack_staging_queue_queue"):
        assert bool(np.all(first[queue] >= 0))


def test_facade_exports() -> None:
    """The facade's __all__ matches what it defines."""
    assert set(engine.__all__) <= set(vars(engine))
    assert engine.simulate.__module__ == "flowdrop.core.engine"
