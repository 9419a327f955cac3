from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from flowdrop.core.contract import RunRequest, RunResult, State
from flowdrop.core.orchestration.orchestrator import Roots, orchestrate
from flowdrop.core.report import plotting
from tests.realtemplates import templates_dir

FIXED = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def roots(tmp_path: Path) -> Roots:
    folder = templates_dir()
    if folder is None or not folder.is_dir():
        pytest.skip("real FlowTime templates not found")
    roots = Roots(tmp_path / "runs", tmp_path / "telemetry", (folder,))
    roots.runs.mkdir()
    roots.telemetry.mkdir()
    return roots


def _run(roots: Roots, body: dict[str, Any], request_id: str = "r") -> RunResult:
    request = RunRequest.model_validate_json(json.dumps(body))
    return orchestrate(request, roots, request_id=request_id, clock=lambda: FIXED)


SIMULATION = {"templateId": "warehouse-picker-waves", "mode": "simulation", "rng": {"seed": 5}}
TELEMETRY = {"templateId": "transportation-basic", "mode": "telemetry", "rng": {"seed": 7}}


def test_options_report_publishes_report_html_with_the_run_and_names_it(roots: Roots) -> None:
    result = _run(roots, {**SIMULATION, "options": {"report": True}})
    assert result.state is State.SUCCEEDED and result.run is not None
    assert result.run.report == f"{result.run.run_id}/report.html"
    text = (roots.runs / result.run.report).read_text(encoding="utf-8")
    assert 'data-series="' in text and result.run.run_id in text
    assert not [p for p in roots.runs.iterdir() if p.name.startswith(".")]  # no staging left


def test_a_telemetry_report_shows_the_bundle_and_capture_vs_replay(roots: Roots) -> None:
    result = _run(roots, {**TELEMETRY, "options": {"report": True}})
    assert result.state is State.SUCCEEDED and result.run is not None and result.run.report
    text = (roots.runs / result.run.report).read_text(encoding="utf-8")
    assert "bundle.json captureKey" in text and "0 differ by more than" in text
    source = result.capture.source_run_id if result.capture else None
    assert source and not (roots.runs / source / "report.html").exists()  # only the asked-for run


def test_without_the_option_no_report_is_written(roots: Roots) -> None:
    result = _run(roots, SIMULATION)
    assert result.run is not None and result.run.report is None
    assert not (roots.runs / result.run.run_id / "report.html").exists()


def test_a_reused_run_without_a_report_is_left_alone_with_a_warning(roots: Roots) -> None:
    first = _run(roots, SIMULATION, "a")
    again = _run(roots, {**SIMULATION, "options": {"report": True}}, "b")
    assert first.run is not None and again.run is not None and again.run.was_reused
    assert again.run.report is None
    assert [w.code for w in again.run.warnings][-1] == "report_not_written"
    assert not (roots.runs / again.run.run_id / "report.html").exists()


def test_without_the_extra_the_request_fails_before_anything_is_written(
    roots: Roots, monkeypatch: pytest.MonkeyPatch
) -> None:
    plotting.plotly_js.cache_clear()
    monkeypatch.setitem(sys.modules, "plotly", None)
    monkeypatch.setitem(sys.modules, "plotly.offline", None)
    try:
        result = _run(roots, {**SIMULATION, "options": {"report": True}})
    finally:
        plotting.plotly_js.cache_clear()
    assert result.state is State.FAILED and result.error is not None
    assert result.error.code.value == "report_unavailable"
    assert result.error.details["extra"] == "report"
    assert list(roots.runs.iterdir()) == []


def test_requests_without_the_option_never_import_the_report_code(roots: Roots) -> None:
    script = f"""
import json, sys
from datetime import UTC, datetime
from pathlib import Path
from flowdrop.core.contract import RunRequest
from flowdrop.core.orchestration.orchestrator import Roots, orchestrate
roots = Roots(Path({str(roots.runs)!r}), Path({str(roots.telemetry)!r}), (Path({str(roots.templates[0])!r}),))
request = RunRequest.model_validate_json({json.dumps(TELEMETRY)!r})
result = orchestrate(request, roots, request_id="x")
assert result.state.value == "succeeded", result
print(sorted(m for m in sys.modules if m.startswith(("plotly", "flowdrop.core.report"))))
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
