"""The canonical run directory: bytes, JSON shapes, hashes, series selection (§10)."""

from __future__ import annotations

import hashlib
import json
import math
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowdrop.core.engine.artifacts import (
    csv_bytes,
    render_run,
    resolve_series,
    write_files,
    write_run,
)
from flowdrop.core.engine.evaluation import evaluate
from flowdrop.core.engine.runreader import read_series_csv
from flowdrop.core.numerics import format_shortest
from flowdrop.core.templating.model import Model

NOW = datetime(2026, 5, 4, 7, 16, 46, 123456, tzinfo=UTC)
BOM = b"\xef\xbb\xbf"


def hello(
    topology: dict[str, Any] | None = None, outputs: list[dict[str, Any]] | None = None
) -> Model:
    document: dict[str, Any] = {
        "schemaVersion": 1,
        "grid": {"bins": 8, "binSize": 1, "binUnit": "hours"},
        "nodes": [
            {"id": "demand", "kind": "const", "values": [10] * 8},
            {"id": "served", "kind": "expr", "expr": "demand * 0.8"},
        ],
        "outputs": outputs if outputs is not None else [{"series": "served", "as": "served.csv"}],
    }
    if topology:
        document["topology"] = topology
    return Model(document)


# What render_run and write_run are called with unless a test says otherwise.
_RENDER: dict[str, Any] = {
    "run_id": "run_test",
    "template": None,
    "parameters": {},
    "mode": "simulation",
    "rng_seed": None,
    "input_hash": None,
    "provenance": None,
    "now": NOW,
}


def write(model: Model, out: Path, **kwargs: Any) -> Any:
    return write_run(model, evaluate(model), out, **{**_RENDER, **kwargs})


def load(path: Path) -> Any:
    data = path.read_bytes()
    assert data.startswith(BOM)
    return json.loads(data[len(BOM) :])


def test_hello_run_matches_reference_shape(tmp_path: Path) -> None:
    """examples/hello (§10.12): one CSV, no topology, no warnings, seed 123, null inputHash."""
    info = write(hello(), tmp_path / "run")
    csv = (tmp_path / "run/series/served@SERVED@DEFAULT.csv").read_bytes()
    assert csv == BOM + b"bin_index,value\n" + b"".join(b"%d,8\n" % t for t in range(8))
    assert info.series_ids == ["served@SERVED@DEFAULT"]
    index = load(tmp_path / "run/series/index.json")
    assert index["series"] == [
        {
            "id": "served@SERVED@DEFAULT",
            "kind": "flow",
            "path": "series/served@SERVED@DEFAULT.csv",
            "unit": "entities/bin",
            "componentId": "SERVED",
            "class": "DEFAULT",
            "classKind": "fallback",
            "points": 8,
            "hash": "sha256:" + hashlib.sha256(csv).hexdigest(),
        }
    ]
    run = load(tmp_path / "run/run.json")
    assert list(run) == [
        "schemaVersion", "runId", "engineVersion", "source", "inputHash", "grid", "modelHash",
        "scenarioHash", "createdUtc", "classCoverage", "warnings", "series", "classes",
    ]  # fmt: skip
    assert run["inputHash"] is None and run["warnings"] == [] and run["classCoverage"] == "missing"
    assert run["grid"] == {
        "bins": 8,
        "binSize": 1,
        "binUnit": "hours",
        "timezone": "UTC",
        "align": "left",
    }
    assert run["createdUtc"] == "2026-05-04T07:16:46.1234560Z"
    manifest = load(tmp_path / "run/manifest.json")
    assert manifest["rng"] == {"kind": "pcg32", "seed": 123} and "provenance" not in manifest
    spec = (tmp_path / "run/spec.yaml").read_bytes()
    assert spec == (tmp_path / "run/model/model.yaml").read_bytes()
    assert run["modelHash"] == manifest["modelHash"] == "sha256:" + hashlib.sha256(spec).hexdigest()
    expected_scenario = hashlib.sha256(spec[len(BOM) :].decode().strip().encode() + b"\nnull\nnull")
    assert run["scenarioHash"] == "sha256:" + expected_scenario.hexdigest()
    assert not (tmp_path / "run/model/provenance.json").exists()
    assert (tmp_path / "run/aggregates").is_dir()


def test_topology_semantics_point_at_series_files(tmp_path: Path) -> None:
    """Semantics are rewritten to file:../series/<id>.csv and those series are written too."""
    topology = {
        "nodes": [
            {
                "id": "Svc",
                "kind": "service",
                "semantics": {"arrivals": "demand", "served": "served"},
            }
        ]
    }
    model = hello(topology)
    info = write(model, tmp_path / "run")
    assert info.series_ids == ["served@SERVED@DEFAULT", "demand@DEMAND@DEFAULT"]
    # The spec's rewrite is its own: the model keeps its series names.
    assert model.document["topology"]["nodes"][0]["semantics"]["arrivals"] == "demand"
    spec = (tmp_path / "run/spec.yaml").read_text(encoding="utf-8-sig")
    assert "arrivals: file:../series/demand@DEMAND@DEFAULT.csv" in spec
    metadata = load(tmp_path / "run/model/metadata.json")
    assert metadata["telemetrySources"] == [
        "file:../series/demand@DEMAND@DEFAULT.csv",
        "file:../series/served@SERVED@DEFAULT.csv",
    ]
    assert metadata["templateId"] == "adhoc-model" and metadata["templateVersion"] == "0.0.0"


def test_served_above_arrivals_is_a_warning(tmp_path: Path) -> None:
    """InvariantAnalyzer: served_exceeds_arrivals lists the first offending bins."""
    topology = {
        "nodes": [
            {
                "id": "Svc",
                "kind": "service",
                "semantics": {"arrivals": "served", "served": "demand"},
            }
        ]
    }
    info = write(hello(topology), tmp_path / "run")
    flagged = [w for w in info.warnings if w["severity"] == "warning"]
    assert [w["code"] for w in flagged] == ["served_exceeds_arrivals"]
    assert flagged[0]["bins"] == [0, 1, 2, 3, 4]
    assert flagged[0]["nodeId"] == "Svc"
    # A service without capacity, processing time or served count also gets upstream's infos.
    assert [w["code"] for w in info.warnings if w["severity"] == "info"] == [
        "missing_capacity_series",
        "missing_processing_time_series",
        "missing_served_count_series",
    ]


def test_edge_lag_warning_escapes_quotes(tmp_path: Path) -> None:
    """Lagged edges warn; the message's quotes are \\u0027 in run.json (.NET encoder)."""
    topology = {
        "nodes": [
            {"id": "A", "kind": "service", "semantics": {"arrivals": "demand", "served": "demand"}},
            {"id": "B", "kind": "service", "semantics": {"arrivals": "demand", "served": "demand"}},
        ],
        "edges": [{"id": "a_b", "from": "A:out", "to": "B:in", "lag": 2}],
    }
    info = write(hello(topology), tmp_path / "run")
    assert "edge_a_b_flowVolume@EDGE_A_B_FLOWVOLUME@DEFAULT" in info.series_ids
    lag = next(w for w in info.warnings if w["code"] == "edge_behavior_violation_lag")
    assert lag["nodeId"] == "A" and lag["edgeIds"] == ["a_b"] and lag["bins"] == []
    raw = (tmp_path / "run/run.json").read_text(encoding="utf-8-sig")
    assert "Edge \\u0027a_b\\u0027 applies a lag of 2 bin(s)." in raw


def test_resolve_series_wildcards() -> None:
    """'*' selects everything in order, 'prefix/*' by prefix, unknown ids are ignored."""
    context = {"a/x": np.zeros(1), "b": np.zeros(1), "a/y": np.zeros(1)}
    assert resolve_series([{"series": "a/*"}, {"series": "zz"}], context) == ["a/x", "a/y"]
    assert resolve_series([{"series": "b"}, {"series": "*"}], context) == ["b", "a/x", "a/y"]
    assert resolve_series([{"series": "zz"}], context) == ["a/x", "b", "a/y"]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=1, max_size=50))
def test_csv_round_trip_is_exact(tmp_path_factory: Any, values: list[float]) -> None:
    """Write then read gives identical floats, NaN and infinities included."""
    path = tmp_path_factory.mktemp("csv") / "s.csv"
    array = np.asarray(values, dtype=np.float64)
    path.write_bytes(csv_bytes(array))
    back = read_series_csv(path, len(values))
    assert np.array_equal(back, array, equal_nan=True)
    numbers = ~np.isnan(array)
    assert np.array_equal(np.signbit(back[numbers]), np.signbit(array[numbers]))


def _csv_value_by_value(values: list[float]) -> bytes:
    rows = "".join(f"{t},{format_shortest(v)}\n" for t, v in enumerate(values))
    return b"\xef\xbb\xbf" + ("bin_index,value\n" + rows).encode()


@given(st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=40))
def test_csv_bytes_matches_value_by_value(values: list[float]) -> None:
    """Formatting each distinct value once writes what format_shortest writes row by row."""
    assert csv_bytes(np.asarray(values, dtype=np.float64)) == _csv_value_by_value(values)


_POOL = [0.0, -0.0, math.nan, -math.nan, math.inf, -math.inf, 1.0, 2.5e-17, 1e15, 0.1, 1 / 3]


@given(st.lists(st.sampled_from(_POOL) | st.floats(), max_size=60))
def test_csv_bytes_tells_repeated_values_apart_by_their_bits(values: list[float]) -> None:
    """Repeated values share one text, but -0.0 is not 0.0 and every NaN is "NaN"."""
    assert csv_bytes(np.asarray(values, dtype=np.float64)) == _csv_value_by_value(values)


def _twins() -> Model:
    """Two series with the same values (their CSVs are the same bytes) and one other."""
    document: dict[str, Any] = {
        "schemaVersion": 1,
        "grid": {"bins": 4, "binSize": 1, "binUnit": "hours"},
        "nodes": [
            {"id": "a", "kind": "const", "values": [1, 2, 3, 4]},
            {"id": "b", "kind": "expr", "expr": "a"},
            {"id": "c", "kind": "expr", "expr": "a * 2"},
        ],
        "outputs": [{"series": "*"}],
    }
    return Model(document)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_repeated_file_bytes_are_hard_links_to_the_first_file(tmp_path: Path) -> None:
    """Same bytes, one inode (a link costs far less than an inode); every file reads the same."""
    model = _twins()
    rendered = render_run(model, evaluate(model), **_RENDER)
    write_files(tmp_path / "run", rendered)
    assert _files(tmp_path / "run") == rendered.files
    series = tmp_path / "run" / "series"
    a, b, c = (next(series.glob(f"{n}@*.csv")).stat() for n in "abc")
    assert (a.st_ino, a.st_nlink) == (b.st_ino, 2)
    assert c.st_ino != a.st_ino and c.st_nlink == 1


def test_a_run_written_over_an_old_one_writes_no_bytes_through_its_links(tmp_path: Path) -> None:
    """A non-empty directory (the CLI's --out over an earlier run) is rewritten file by file,
    and a file the old run linked to its twin is unlinked first: the twins now differ."""
    write(_twins(), tmp_path / "run")
    other = _twins()
    other.document["nodes"][1]["expr"] = "a + 1"
    rendered = render_run(other, evaluate(other), **_RENDER)
    write_files(tmp_path / "run", rendered)
    assert _files(tmp_path / "run") == rendered.files
    assert all(p.stat().st_nlink == 1 for p in (tmp_path / "run").rglob("*.csv"))


def test_where_links_are_refused_every_file_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*_args: Any, **_kwargs: Any) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "link", refuse)
    model = _twins()
    rendered = render_run(model, evaluate(model), **_RENDER)
    write_files(tmp_path / "run", rendered)
    assert _files(tmp_path / "run") == rendered.files
    assert all(p.stat().st_nlink == 1 for p in (tmp_path / "run").rglob("*") if p.is_file())
