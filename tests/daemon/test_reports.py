from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from flowdrop.core import engine
from flowdrop.core.report import plotting
from flowdrop.daemon.cli import main
from flowdrop.daemon.testing import mini_template, write_config


@pytest.fixture
def configured_run(tmp_path: Path) -> tuple[Path, Path]:
    config = write_config(tmp_path)
    template = tmp_path / "mini.yaml"
    template.write_text(mini_template("mini", "mini-key"))
    run_dir = tmp_path / "runs" / "run_mini"
    engine.simulate(engine.load_template(template), {}, run_dir, run_id="run_mini")
    return config, run_dir


def test_report_of_a_run_id_under_the_runs_root_goes_to_the_current_directory(
    configured_run: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config, _ = configured_run
    monkeypatch.chdir(tmp_path)
    assert main(["report", "run_mini", "--config", str(config)]) == 0
    text = (tmp_path / "run_mini.html").read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and 'data-series="' in text
    assert "report written to" in capsys.readouterr().out


def test_report_of_a_run_directory_to_a_chosen_file(
    configured_run: tuple[Path, Path], tmp_path: Path
) -> None:
    config, run_dir = configured_run
    out = tmp_path / "out" / "r.html"
    assert main(["report", str(run_dir), "--config", str(config), "--out", str(out)]) == 0
    assert out.stat().st_size > 1_000_000  # plotly.js is inside


def test_an_unknown_run_exits_1_with_a_code(
    configured_run: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    config, _ = configured_run
    assert main(["report", "run_nope", "--config", str(config)]) == 1
    assert "error: storage_error:" in capsys.readouterr().err


def test_without_the_report_extra_the_error_names_it(
    configured_run: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config, run_dir = configured_run
    plotting.plotly_js.cache_clear()
    monkeypatch.setitem(sys.modules, "plotly", None)
    monkeypatch.setitem(sys.modules, "plotly.offline", None)
    try:
        assert main(["report", str(run_dir), "--config", str(config)]) == 1
    finally:
        plotting.plotly_js.cache_clear()
    err = capsys.readouterr().err
    assert "error: report_unavailable:" in err and "flowdrop[report]" in err


@pytest.fixture
def real_config(tmp_path: Path) -> Path:
    from tests.realtemplates import templates_dir

    folder = templates_dir()
    if folder is None or not folder.is_dir():
        pytest.skip("real FlowTime templates not found")
    return write_config(tmp_path, templates=[str(folder)])


def test_parity_prints_the_table_and_exits_0_without_touching_the_roots(
    real_config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = tmp_path / "parity.html"
    args = ["parity", "warehouse-picker-waves", "--seed", "3", "--report", str(report)]
    code = main([*args, "--config", str(real_config)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "max abs diff" in out and "max rel diff" in out and "parity holds" in out
    assert "Capture vs replay" in report.read_text(encoding="utf-8")
    assert not (tmp_path / "telemetry").exists() and not (tmp_path / "runs").exists()


def test_a_corrupted_bundle_makes_parity_exit_1_naming_the_series(
    real_config: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """One served value of the bundle is changed and its manifest hash fixed up (wrong data that
    passes the integrity check, as a capture bug would write): the replay must disagree."""
    from flowdrop.core.report import parity
    from flowdrop.core.telemetry.capture import CaptureResult

    corrupted: list[str] = []
    real_capture = parity.capture_run

    def capture_then_corrupt(run_dir: Path, out_dir: Path, **kwargs: Any) -> CaptureResult:
        result = real_capture(run_dir, out_dir, **kwargs)
        victim = next(f for f in result.files if f.metric == "Served")
        path = out_dir / victim.path
        lines = path.read_text(encoding="utf-8").splitlines()
        index, class_id, value = lines[5].split(",")
        lines[5] = f"{index},{class_id},{float(value) + 1.5}"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        manifest_path = out_dir / "manifest.json"
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        for entry in manifest["files"]:
            if entry["path"] == victim.path:
                entry["hash"] = "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
        manifest_path.write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        corrupted.append(victim.source_series_id)
        return result

    monkeypatch.setattr(parity, "capture_run", capture_then_corrupt)
    assert main(["parity", "warehouse-picker-waves", "--config", str(real_config)]) == 1
    out = capsys.readouterr().out
    verdict = out.strip().splitlines()[-1]
    assert verdict.startswith("parity FAILS") and corrupted[0] in verdict
    assert any(corrupted[0] in line and "DIFFERS" in line for line in out.splitlines())
