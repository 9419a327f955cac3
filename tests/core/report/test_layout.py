from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from flowdrop.core import engine
from flowdrop.core.report.layout import build_layout, node_fields
from tests.realtemplates import templates_dir

FIXED = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def simulated(tmp_path: Path, template_id: str) -> engine.RunData:
    folder = templates_dir()
    if folder is None or not (folder / f"{template_id}.yaml").is_file():
        pytest.skip("real FlowTime templates not found")
    template = engine.load_template(folder / f"{template_id}.yaml")
    engine.simulate(template, {}, tmp_path / template_id, rng_seed=7, now=FIXED)
    return engine.read_run(tmp_path / template_id)


@pytest.mark.parametrize(
    "template_id", ["transportation-basic-classes", "it-document-processing-continuous"]
)
def test_every_indexed_series_is_on_some_chart(tmp_path: Path, template_id: str) -> None:
    run = simulated(tmp_path, template_id)
    layout = build_layout(run)
    drawn = {sid for chart in layout.charts for sid in chart.series_ids}
    assert {str(e["id"]) for e in run.entries} <= drawn


def test_node_panels_come_first_in_topology_order(tmp_path: Path) -> None:
    run = simulated(tmp_path, "transportation-basic-classes")
    layout = build_layout(run)
    panels = [c.title.split(" ")[0] for c in layout.charts if c.section == "nodes"]
    topology = [node for node, found in node_fields(run) if found]
    assert panels == topology
    assert layout.charts[0].section == "nodes"
    sections = [c.section for c in layout.charts]
    assert sections == sorted(sections, key=["nodes", "classes", "edges", "other"].index)


def test_utilisation_and_latency_are_derived_as_the_state_api_does(tmp_path: Path) -> None:
    run = simulated(tmp_path, "transportation-basic-classes")
    layout = build_layout(run)
    found = dict(node_fields(run))["HubQueue"]
    served, capacity = run.series[found["served"]], run.series[found["capacity"]]
    expected = np.where(capacity > 0, served / np.where(capacity > 0, capacity, 1), np.nan)
    np.testing.assert_allclose(layout.values["derived:HubQueue:utilization"], expected)
    latency = layout.values["derived:HubQueue:latencyMinutes"]
    depth = run.series[found["queueDepth"]]
    for t in range(len(served)):
        want = depth[t] / served[t] * 5 if served[t] > 0 else math.nan
        assert latency[t] == pytest.approx(want, nan_ok=True)


def test_class_templates_get_a_per_class_breakdown_and_edges_a_section(tmp_path: Path) -> None:
    run = simulated(tmp_path, "transportation-basic-classes")
    layout = build_layout(run)
    classes = [c for c in layout.charts if c.section == "classes"]
    assert classes
    assert all("@DEFAULT" not in sid for c in classes for sid in c.series_ids)
    by_class = {sid for c in classes for sid in c.series_ids}
    classed = {s for s in run.series if not s.endswith("@DEFAULT") and not s.startswith("edge_")}
    assert classed <= by_class  # every classed series is broken down, not only node semantics
    edges = [c for c in layout.charts if c.section == "edges"]
    assert edges and all(sid.startswith("edge_") for c in edges for sid in c.series_ids)
