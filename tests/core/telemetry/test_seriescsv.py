"""Bundle CSVs: .NET G17 numbers, special values, gaps, and the float round trip (§4.5)."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from flowdrop.core.engine.runreader import read_series_csv
from flowdrop.core.telemetry.seriescsv import render_csv


def test_render_csv_formats_g17_and_specials() -> None:
    """Values use .NET G17; NaN/∞ by name; a gap is an empty field."""
    data = render_csv([0.1, 1e-7, math.nan, math.inf, None, 10.0], "DEFAULT").decode()
    assert data.splitlines()[1:] == [
        "0,DEFAULT,0.10000000000000001",
        "1,DEFAULT,9.9999999999999995E-08",
        "2,DEFAULT,NaN",
        "3,DEFAULT,Infinity",
        "4,DEFAULT,",
        "5,DEFAULT,10",
    ]


@given(st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=1, max_size=50))
def test_capture_csv_round_trips_every_float(values: list[float]) -> None:
    """G17 capture CSVs read back to the identical float64 values (replay parity rests on it)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.csv"
        path.write_bytes(render_csv(list(values), "DEFAULT"))
        assert read_series_csv(path).tolist() == values
