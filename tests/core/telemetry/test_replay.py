"""Replay parity: simulate -> capture -> replay gives the source run back, bin for bin.

The ClassesLoopTests idea of upstream, over every real template (totals and per class).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from flowdrop.core import engine
from flowdrop.core.hashing import input_hash
from flowdrop.core.telemetry.bundle import ExpectedGrid, validate_bundle
from flowdrop.core.telemetry.capture import capture_run
from flowdrop.core.telemetry.replay import replay_bundle
from tests.realtemplates import real_template_paths

NOW = datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC)


def _loop(template_path: Path, tmp_path: Path) -> tuple[engine.RunData, engine.RunData, Path]:
    template = engine.load_template(template_path)
    source_dir, bundle_dir, replay_dir = (tmp_path / n for n in ("source", "bundle", "replay"))
    for folder in (source_dir, bundle_dir, replay_dir):
        folder.mkdir()
    engine.simulate(template, {}, source_dir, rng_seed=7, run_id="source", now=NOW)
    capture_run(source_dir, bundle_dir, now=NOW)
    model = engine.generate_model(template, {}, mode="telemetry", now=NOW)
    grid = model.grid
    manifest = validate_bundle(
        bundle_dir, "k", expected=ExpectedGrid(grid.bins, grid.bin_size, grid.bin_unit)
    )
    digest = input_hash(template.id, template.version, "telemetry", {}, {}, "pcg32", 7)
    replay_bundle(
        model,
        template,
        {},
        manifest,
        replay_dir,
        run_id="replay",
        input_hash=digest,
        provenance={"source": "test"},
        now=NOW,
    )
    return engine.read_run(source_dir), engine.read_run(replay_dir), bundle_dir


@pytest.mark.parametrize("template_path", real_template_paths(), ids=lambda p: p.stem)
def test_replay_reproduces_every_series(template_path: Path, tmp_path: Path) -> None:
    """Every series of the source simulation (totals and per class) equals the replay's."""
    source, replay, bundle_dir = _loop(template_path, tmp_path)
    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    assert manifest["files"], "the capture found nothing to capture"
    assert source.series.keys() <= replay.series.keys()
    for series_id, values in source.series.items():
        assert np.array_equal(values, replay.series[series_id], equal_nan=True), series_id
    classes_in_source = [s for s in source.series if not s.endswith("@DEFAULT")]
    if manifest["supportsClassMetrics"]:
        assert classes_in_source, "class-aware capture but no per-class series compared"


def test_loop_parity_template_totals_and_classes(tmp_path: Path) -> None:
    """loop-parity-template (no captureKey): exact totals and Retail/Wholesale after replay."""
    path = next(p for p in real_template_paths() if p.stem == "loop-parity-template")
    source, replay, bundle_dir = _loop(path, tmp_path)
    expected_total = [13, 15, 15, 17, 17, 19, 19, 21, 21, 23, 23, 25]
    for run in (source, replay):
        assert run.node_series("total_arrivals").tolist() == expected_total
        assert run.node_series("total_served").tolist() == expected_total
        classes = run.classes_of("total_arrivals")
        assert classes["Retail"].tolist() == list(range(10, 22))
        assert classes["Wholesale"].tolist() == [3, 4] * 6
    assert (bundle_dir / "total_arrivals_Retail.csv").is_file()


def test_replay_copies_bundle_into_run(tmp_path: Path) -> None:
    """model/telemetry/ of the replayed run holds the bundle's CSVs and its manifest."""
    path = next(p for p in real_template_paths() if p.stem == "warehouse-picker-waves")
    _, replay, bundle_dir = _loop(path, tmp_path)
    telemetry = replay.path / "model" / "telemetry"
    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    for entry in manifest["files"]:
        assert (telemetry / entry["path"]).read_bytes() == (bundle_dir / entry["path"]).read_bytes()
    copied = json.loads((telemetry / "telemetry-manifest.json").read_text())
    assert copied["files"] == manifest["files"]
    assert replay.run["runId"] == "replay"
    assert replay.metadata["mode"] == "telemetry"
