from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from flowdrop.core import engine
from flowdrop.core.report.parity import format_table, run_parity
from tests.realtemplates import real_template_paths

FIXED = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
WITH_CAPTURE_KEY = [p for p in real_template_paths() if "captureKey" in p.read_text()]


@pytest.mark.parametrize("template", WITH_CAPTURE_KEY, ids=lambda p: p.stem)
def test_parity_holds_for_every_real_template_with_a_capture_key(
    tmp_path: Path, template: Path
) -> None:
    loaded = engine.load_template(template)
    assert loaded.capture_key
    result = run_parity(loaded, {}, tmp_path, seed=7, now=FIXED)
    assert result.ok, format_table(result)
    assert result.captured_files > 0
    compared = {d.series_id for d in result.diffs}
    assert {str(e["id"]) for e in engine.read_run(result.replay_dir).entries} <= compared
    assert {str(e["id"]) for e in engine.read_run(result.source_dir).entries} <= compared
    assert "parity holds" in format_table(result)
