"""Reading runs back: documents, series values per class, error paths."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from flowdrop.core.engine import load_template, read_run, simulate
from flowdrop.core.engine.runreader import read_series_csv
from flowdrop.core.errors import ErrorCode, FlowdropError

EXAMPLES = Path(__file__).resolve().parents[3] / "src/flowdrop/examples/templates"


def test_read_run_returns_documents_and_series(tmp_path: Path) -> None:
    """Everything the writer produced comes back, values identical."""
    info = simulate(
        load_template(EXAMPLES / "demo-plain.yaml"),
        {},
        tmp_path / "run",
        now=datetime(2026, 1, 1, tzinfo=UTC),
    )
    run = read_run(info.path)
    assert run.run_id == info.run_id
    assert [e["id"] for e in run.entries] == info.series_ids
    assert run.node_series("released").tolist() == [0, 0, 60, 0, 0, 45, 0, 0, 60]
    assert run.classes_of("released") == {}
    assert run.model["grid"]["bins"] == 9
    assert run.provenance is not None and run.provenance["templateId"] == "demo-plain"
    assert run.metadata["templateTitle"] == "Demo Batch Pipeline"


def test_csv_reader_fills_missing_bins_and_reads_class_files(tmp_path: Path) -> None:
    """Absent bins are 0; empty values are NaN; three-column capture CSVs are accepted."""
    path = tmp_path / "c.csv"
    path.write_text("bin_index,classId,value\n0,A,1.5\n2,A,\n")
    values = read_series_csv(path, 3)
    assert values[0] == 1.5 and values[1] == 0 and np.isnan(values[2])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("t,value\n0,1\n", "Series file 's.csv' has an unexpected header."),
        ("bin_index,value\n5,1\n", "Series file 's.csv' has bin index 5 outside the grid."),
    ],
)
def test_csv_reader_errors(tmp_path: Path, content: str, message: str) -> None:
    """Malformed series files are STORAGE_ERROR naming only the file."""
    path = tmp_path / "s.csv"
    path.write_text(content)
    with pytest.raises(FlowdropError) as caught:
        read_series_csv(path, 2)
    assert caught.value.code is ErrorCode.STORAGE_ERROR
    assert caught.value.message == message
    assert caught.value.details == {"file": "s.csv"}


def test_missing_run_json(tmp_path: Path) -> None:
    """A directory without run.json is not a run."""
    with pytest.raises(FlowdropError) as caught:
        read_run(tmp_path)
    assert caught.value.message == f"Run '{tmp_path.name}' has no run.json."


def test_a_bundle_csv_reads_by_bin_with_empty_and_nan_as_nan(tmp_path: Path) -> None:
    """Capture CSVs (``bin_index,classId,value``) go through the same reader as run series."""
    path = tmp_path / "x.csv"
    rows = ["0,DEFAULT,1.5", "1,DEFAULT,", "2,DEFAULT,NaN", "3,DEFAULT,Infinity"]
    path.write_bytes(("\ufeffbin_index,classId,value\n" + "\n".join(rows) + "\n").encode())
    values = read_series_csv(path, 4)
    assert values[0] == 1.5 and values[3] == float("inf")
    assert values[1] != values[1] and values[2] != values[2]
