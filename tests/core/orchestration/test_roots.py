"""The run store: staged writes published once, summarised from what was just rendered."""

from __future__ import annotations

from pathlib import Path

from flowdrop.core import engine
from flowdrop.core.contract import Mode
from flowdrop.core.orchestration.roots import RunStore
from flowdrop.daemon.testing import mini_template


def test_a_written_run_is_summarised_from_its_render_not_read_back(tmp_path: Path) -> None:
    """issue #8: run.json is not re-read right after it was written."""
    template = engine.load_template(mini_template("mini", None))
    rendered = [{"code": "from_render", "message": "kept in memory"}]

    def writer(staging: Path) -> engine.RunInfo:
        (staging / "run.json").write_text('{"warnings": [{"code": "on_disk", "message": "x"}]}')
        return engine.RunInfo(run_id="r1", path=staging, warnings=rendered)

    summary = RunStore(tmp_path).write("r1", Mode.SIMULATION, template, writer, replace=False)
    assert [w.code for w in summary.warnings] == ["from_render"]
    assert [p.name for p in tmp_path.iterdir()] == ["r1"]


def test_a_run_published_meanwhile_is_reused_and_the_staging_removed(tmp_path: Path) -> None:
    template = engine.load_template(mini_template("mini", None))
    (tmp_path / "r1").mkdir()
    (tmp_path / "r1" / "run.json").write_text('{"warnings": []}')

    def writer(staging: Path) -> None:
        (staging / "run.json").write_text("{}")

    summary = RunStore(tmp_path).write("r1", Mode.SIMULATION, template, writer, replace=False)
    assert summary.was_reused is True
    assert [p.name for p in tmp_path.iterdir()] == ["r1"]
