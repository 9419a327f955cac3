from __future__ import annotations

import sys
from pathlib import Path

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
