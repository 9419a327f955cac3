"""Run reports in a real browser: headless Chromium loads each report from file:// with a
network log, runs its scripts, and the DOM it leaves behind is checked.

Screenshots go to ``$FLOWDROP_SCREENSHOTS`` when set (docs/report.png is one of them), else to
the test's temporary directory.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from flowdrop.core import engine
from flowdrop.core.contract import RunRequest, State
from flowdrop.core.orchestration.orchestrator import Roots, orchestrate
from flowdrop.core.report import write_report
from tests.browser import blank_fraction, render, screenshot
from tests.realtemplates import real_template_paths, templates_dir

# The first browser test may install chromium with apt-get on a fresh CI machine (minutes).
pytestmark = pytest.mark.timeout(900)
FIXED = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
CLASS_TEMPLATE = "transportation-basic-classes"
LARGEST = "it-document-processing-continuous"


def _shots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("FLOWDROP_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _simulated_report(tmp_path: Path, template: Path) -> tuple[Path, Path]:
    loaded = engine.load_template(template)
    run_dir = tmp_path / "runs" / loaded.id
    engine.simulate(loaded, {}, run_dir, rng_seed=7, now=FIXED)
    return run_dir, write_report(run_dir, tmp_path / f"{loaded.id}.html", now=FIXED)


def _index_ids(run_dir: Path) -> set[str]:
    index = json.loads((run_dir / "series" / "index.json").read_text(encoding="utf-8-sig"))
    return {str(entry["id"]) for entry in index["series"]}


def _check_rendered(report: Path, run_dir: Path, work: Path) -> None:
    page = render(report, work, fragment="#render-all")
    assert page.requests == [], "the report fetched from the network"
    assert page.errors == ""
    charts = page.attribute_values("data-chart")
    assert charts and page.rendered == len(charts)
    assert page.dom.count("main-svg") >= len(charts), "a chart was not drawn"
    drawn = {sid for ids in page.attribute_values("data-series") for sid in ids.split(",") if sid}
    assert _index_ids(run_dir) - drawn == set(), "a series of series/index.json is on no chart"


def test_the_network_detector_sees_a_page_that_fetches(tmp_path: Path) -> None:
    page = tmp_path / "fetches.html"
    page.write_text('<img src="http://127.0.0.1:9/x.png"><p>hi</p>', encoding="utf-8")
    assert render(page, tmp_path / "work", budget_ms=3000).requests == ["http://127.0.0.1:9/x.png"]


@pytest.mark.parametrize("template", real_template_paths(), ids=lambda p: p.stem)
def test_every_real_template_report_renders_offline_with_every_series(
    tmp_path: Path, template: Path
) -> None:
    run_dir, report = _simulated_report(tmp_path, template)
    _check_rendered(report, run_dir, tmp_path / "browser")


@pytest.mark.parametrize("template_id", [CLASS_TEMPLATE, LARGEST])
def test_screenshots_of_a_class_template_and_the_largest_template_are_not_blank(
    tmp_path: Path, template_id: str
) -> None:
    folder = templates_dir()
    if folder is None or not folder.is_dir():
        pytest.skip("real FlowTime templates not found")
    _, report = _simulated_report(tmp_path, folder / f"{template_id}.yaml")
    png = _shots(tmp_path) / f"report-{template_id}.png"
    assert screenshot(report, png, tmp_path / "browser") == []
    assert blank_fraction(png) < 0.97
    # A narrow window (headless Chromium's minimum is ~500 px) still shows the charts.
    if template_id == CLASS_TEMPLATE:
        narrow = _shots(tmp_path) / f"report-{template_id}-narrow.png"
        assert screenshot(report, narrow, tmp_path / "narrow", width=560, height=1600) == []
        assert blank_fraction(narrow) < 0.97


def test_a_telemetry_run_report_shows_its_bundle_and_capture_vs_replay(tmp_path: Path) -> None:
    folder = templates_dir()
    if folder is None or not folder.is_dir():
        pytest.skip("real FlowTime templates not found")
    roots = Roots(tmp_path / "runs", tmp_path / "telemetry", (folder,))
    roots.runs.mkdir()
    roots.telemetry.mkdir()
    body = {"templateId": "transportation-basic", "mode": "telemetry", "rng": {"seed": 7}}
    result = orchestrate(
        RunRequest.model_validate_json(json.dumps(body)), roots, request_id="t", clock=lambda: FIXED
    )
    assert result.state is State.SUCCEEDED and result.run is not None
    run_dir = roots.runs / result.run.path
    report = write_report(
        run_dir, tmp_path / "telemetry.html", telemetry_root=roots.telemetry, now=FIXED
    )
    text = report.read_text(encoding="utf-8")
    assert "Bundle provenance" in text and "bundle.json sourceRunId" in text
    assert "differ by more than 1e-09 relative" in text and "capture vs replay" in text
    _check_rendered(report, run_dir, tmp_path / "browser")
    png = _shots(tmp_path) / "report-telemetry-run.png"
    assert screenshot(report, png, tmp_path / "shot") == []
    assert blank_fraction(png) < 0.97


def test_the_spool_overview_page_renders_offline(tmp_path: Path) -> None:
    from flowdrop.daemon.statuspage import write_page
    from tests.daemon.test_statuspage import populated_spool

    spool = populated_spool(tmp_path)
    page = write_page(spool, tmp_path / "runs", tmp_path / "overview.html")
    rendered = render(page, tmp_path / "browser", budget_ms=2000)
    assert rendered.requests == [] and rendered.errors == ""
    assert rendered.dom.count('class="alert"') == 2
    png = _shots(tmp_path) / "status-page.png"
    assert screenshot(page, png, tmp_path / "shot", height=600, budget_ms=2000) == []
    assert blank_fraction(png) < 0.97
