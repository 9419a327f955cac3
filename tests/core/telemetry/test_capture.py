"""Telemetry capture on hand-built canonical runs (upstream TelemetryRunFactory, ref §10.1/§10.5)."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from flowdrop.core.errors import ErrorCode, FlowdropError
from flowdrop.core.numerics import format_g17
from flowdrop.core.telemetry.capture import GapHandling, GapOptions, capture_run

NOW = datetime(2025, 10, 22, 12, 52, 5, 163744, tzinfo=UTC)

# name -> (template id, bins, binSize, {service: {metric: values}}, edges)
FIXTURES: dict[str, tuple[str, int, int, dict[str, dict[str, list[float]]]]] = {
    "OrderSystem": (
        "order-system",
        4,
        5,
        {
            "OrderService": {
                "arrivals": [10, 11, 12, 13],
                "served": [8, 9, 10, 11],
                "errors": [1, 1, 1, 1],
            },
            "PaymentService": {
                "arrivals": [5, 6, 7, 8],
                "served": [4, 5, 6, 7],
                "errors": [0, 0, 0, 0],
            },
        },
    ),
    "Microservices": (
        "microservices-system",
        4,
        5,
        {
            "ApiGateway": {
                "arrivals": [50, 60, 55, 65],
                "served": [48, 58, 54, 62],
                "errors": [2, 2, 1, 3],
            },
            "AuthService": {
                "arrivals": [48, 58, 54, 62],
                "served": [45, 55, 52, 60],
                "errors": [1, 1, 2, 1],
            },
            "InventoryService": {
                "arrivals": [45, 55, 52, 60],
                "served": [44, 53, 50, 58],
                "errors": [1, 2, 2, 2],
            },
        },
    ),
    "HttpService": (
        "http-service",
        4,
        15,
        {
            "HttpService": {
                "arrivals": [30, 28, 35, 32],
                "served": [29, 27, 34, 31],
                "errors": [1] * 4,
            }
        },
    ),
}


def _series_id(node: str) -> str:
    return f"{node}@{node.upper()}@DEFAULT"


def make_run(
    root: Path,
    fixture: str = "OrderSystem",
    *,
    include_topology: bool = True,
    classes: dict[str, dict[str, list[float]]] | None = None,
    raw_values: dict[str, list[str]] | None = None,
) -> Path:
    """A fake canonical run like upstream's TelemetryRunFactory (``t,value`` CSVs, G17)."""
    template_id, bins, bin_size, services = FIXTURES[fixture]
    run_dir = root / f"run_{template_id}"
    (run_dir / "series").mkdir(parents=True)
    nodes, topo, outputs, index, run_series = [], [], [], [], []
    for service, metrics in services.items():
        prefix = service.lower().replace("service", "") or service.lower()
        semantics = {}
        for metric, values in metrics.items():
            node = f"{prefix}_{metric}"
            semantics[metric] = f"file:../series/{_series_id(node)}.csv"
            nodes.append({"id": node, "kind": "const", "values": values})
            outputs.append({"series": node, "as": f"{service}_{metric}.csv"})
            entries = [("DEFAULT", [format_g17(v) for v in values])]
            if raw_values and node in raw_values:
                entries = [("DEFAULT", raw_values[node])]
            for class_id, per_class in (classes or {}).get(node, {}).items():
                entries.append((class_id, [format_g17(v) for v in per_class]))
            for class_id, texts in entries:
                sid = f"{node}@{node.upper()}@{class_id}"
                body = "t,value\n" + "".join(f"{i},{t}\n" for i, t in enumerate(texts))
                (run_dir / "series" / f"{sid}.csv").write_text(body, encoding="utf-8")
                digest = "sha256:placeholder"
                index.append(
                    {
                        "id": sid,
                        "kind": "flow",
                        "path": f"series/{sid}.csv",
                        "unit": "entities/bin",
                        "componentId": node.upper(),
                        "class": class_id,
                        "classKind": "fallback" if class_id == "DEFAULT" else "specific",
                        "points": bins,
                        "hash": digest,
                    }
                )
                run_series.append({"id": sid, "path": f"series/{sid}.csv", "unit": "entities/bin"})
        topo.append({"id": service, "kind": "service", "semantics": semantics})
    declared = sorted({c for per in (classes or {}).values() for c in per})
    spec = {
        "schemaVersion": 1,
        "metadata": {"id": template_id, "title": template_id, "version": "1.0.0"},
        "grid": {
            "bins": bins,
            "binSize": bin_size,
            "binUnit": "minutes",
            "start": "2025-01-01T00:00:00Z",
        },
        "classes": [{"id": c} for c in declared],
        "topology": {"nodes": topo if include_topology else [], "edges": []},
        "nodes": nodes,
        "outputs": outputs,
    }
    (run_dir / "spec.yaml").write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    grid = {"bins": bins, "binSize": bin_size, "binUnit": "minutes"}
    run_json = {
        "schemaVersion": 1,
        "runId": run_dir.name,
        "engineVersion": "0.1.0-test",
        "source": "unit-test",
        "grid": grid,
        "scenarioHash": "sha256:" + "1" * 64,
        "createdUtc": "2025-01-01T00:00:00Z",
        "series": run_series,
    }
    (run_dir / "run.json").write_text(json.dumps(run_json), encoding="utf-8")
    (run_dir / "series" / "index.json").write_text(
        json.dumps({"schemaVersion": 1, "grid": grid, "series": index}), encoding="utf-8"
    )
    return run_dir


def _capture(tmp_path: Path, run_dir: Path, **kwargs: Any) -> tuple[Path, Any]:
    out = tmp_path / "bundle"
    out.mkdir()
    return out, capture_run(run_dir, out, now=NOW, **kwargs)


class TestCaptureGolden:
    @pytest.mark.parametrize("fixture", sorted(FIXTURES))
    def test_capture_matches_golden_expectations(self, tmp_path: Path, fixture: str) -> None:
        """Every service series becomes ``<Service>_<metric>.csv`` with G17 rows and its hash."""
        run_dir = make_run(tmp_path, fixture)
        out, result = _capture(tmp_path, run_dir)
        manifest = json.loads((out / "manifest.json").read_text())
        _, bins, _, services = FIXTURES[fixture]
        assert result.warnings == []
        assert manifest["warnings"] == []
        assert len(manifest["files"]) == sum(len(m) for m in services.values())
        assert manifest["provenance"]["runId"] == run_dir.name
        for entry in manifest["files"]:
            node, metric = entry["nodeId"], entry["metric"].lower()
            values = services[node][metric]
            data = (out / entry["path"]).read_bytes()
            assert entry["path"] == f"{node}_{metric}.csv"
            expected = "bin_index,classId,value\n" + "".join(
                f"{i},DEFAULT,{format_g17(v)}\n" for i, v in enumerate(values)
            )
            assert data.decode() == expected
            assert entry["hash"] == "sha256:" + hashlib.sha256(data).hexdigest()
            assert entry["points"] == bins
            assert entry["classId"] == "DEFAULT"

    def test_manifest_v2_fields_and_order(self, tmp_path: Path) -> None:
        """The manifest has FlowTime's v2 fields in order, nulls omitted, classCoverage always."""
        out, _ = _capture(tmp_path, make_run(tmp_path))
        manifest = json.loads((out / "manifest.json").read_text())
        assert list(manifest) == [
            "schemaVersion",
            "window",
            "grid",
            "files",
            "warnings",
            "provenance",
            "supportsClassMetrics",
            "classCoverage",
        ]
        assert manifest["schemaVersion"] == 2
        assert manifest["window"] == {"startTimeUtc": "2025-01-01T00:00:00Z", "durationMinutes": 20}
        assert manifest["grid"] == {"bins": 4, "binSize": 5, "binUnit": "minutes"}
        assert manifest["provenance"] == {
            "runId": "run_order-system",
            "scenarioHash": "sha256:" + "1" * 64,
            "capturedAtUtc": "2025-10-22T12:52:05.1637440Z",
        }
        assert manifest["supportsClassMetrics"] is False
        assert manifest["classCoverage"] == "missing"
        first = (out / "OrderService_arrivals.csv").read_text().splitlines()[1]
        assert first == "0,DEFAULT,10"

    def test_fallback_to_outputs_when_topology_empty(self, tmp_path: Path) -> None:
        """Without topology the outputs' ``as`` names give node and metric (suffix rules)."""
        _, result = _capture(tmp_path, make_run(tmp_path, include_topology=False))
        names = [(f.node_id, f.metric, f.path) for f in result.files]
        assert ("OrderService", "Arrivals", "OrderService_arrivals.csv") in names
        assert ("PaymentService", "Errors", "PaymentService_errors.csv") in names
        assert len(names) == 6


class TestGapsAndWarnings:
    def test_nan_is_kept_with_nan_detected_warning_by_default(self, tmp_path: Path) -> None:
        """NaN always warns; by default it is written as ``NaN``."""
        run_dir = make_run(tmp_path, raw_values={"order_served": ["8", "NaN", "10", "11"]})
        out, result = _capture(tmp_path, run_dir)
        assert [(w.code, w.node_id, w.bins) for w in result.warnings] == [
            ("nan_detected", "OrderService", (1,))
        ]
        assert result.warnings[0].message == "Detected NaN/∞ at bin 1 for OrderService:Served."
        assert (out / "OrderService_served.csv").read_text().splitlines()[2] == "1,DEFAULT,NaN"
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["warnings"][0]["code"] == "nan_detected"

    def test_fill_nan_with_zero_patches_and_warns(self, tmp_path: Path) -> None:
        """``fill_nan_with_zero`` writes 0 and a ``nan_fill`` warning per bin."""
        raw = {"order_served": ["8", "NaN", "10", "11"], "payment_errors": ["NaN", "0", "0", "0"]}
        out, result = _capture(
            tmp_path, make_run(tmp_path, raw_values=raw), gap_options=GapOptions(True)
        )
        assert [w.code for w in result.warnings] == ["nan_fill", "nan_fill"]
        assert (out / "OrderService_served.csv").read_text().splitlines()[2] == "1,DEFAULT,0"

    def test_gap_detection_warns_and_keeps_empty(self, tmp_path: Path) -> None:
        """An empty value is a gap: ``data_gap`` under WarnOnly, written as an empty field."""
        run_dir = make_run(tmp_path, raw_values={"order_arrivals": ["10", "11", "", "13"]})
        options = GapOptions(missing_value_handling=GapHandling.WARN_ONLY)
        out, result = _capture(tmp_path, run_dir, gap_options=options)
        gap = result.warnings[0]
        assert (gap.code, gap.node_id, gap.bins) == ("data_gap", "OrderService", (2,))
        assert gap.message == "Missing value at bin 2 for OrderService:Arrivals."
        assert (out / "OrderService_arrivals.csv").read_text().splitlines()[3] == "2,DEFAULT,"

    def test_gap_fill_zeros_patches(self, tmp_path: Path) -> None:
        """FillWithZero writes 0 for a gap."""
        run_dir = make_run(tmp_path, raw_values={"order_arrivals": ["10", "", "12", "13"]})
        options = GapOptions(missing_value_handling=GapHandling.FILL_WITH_ZERO)
        out, _ = _capture(tmp_path, run_dir, gap_options=options)
        assert (out / "OrderService_arrivals.csv").read_text().splitlines()[2] == "1,DEFAULT,0"

    def test_length_mismatch_warns(self, tmp_path: Path) -> None:
        """A series shorter than the index's points gives ``length_mismatch``."""
        run_dir = make_run(tmp_path, raw_values={"order_arrivals": ["10", "11", "12"]})
        _, result = _capture(tmp_path, run_dir)
        assert [w.code for w in result.warnings] == ["length_mismatch"]
        name = "order_arrivals@ORDER_ARRIVALS@DEFAULT.csv"
        assert result.warnings[0].message == f"Series '{name}' contained 3 points but expected 4."

    def test_unparseable_value_is_capture_failed(self, tmp_path: Path) -> None:
        """A value that is not a number fails the capture with its file named."""
        run_dir = make_run(tmp_path, raw_values={"order_arrivals": ["10", "x", "12", "13"]})
        with pytest.raises(FlowdropError) as info:
            _capture(tmp_path, run_dir)
        assert info.value.code is ErrorCode.CAPTURE_FAILED
        assert info.value.message == (
            "Unable to parse value 'x' from series/order_arrivals@ORDER_ARRIVALS@DEFAULT.csv."
        )

    @pytest.mark.parametrize(
        ("missing", "message"),
        [
            ("run.json", "run.json not found in the source run."),
            ("series/index.json", "series/index.json not found in the source run."),
            ("spec.yaml", "Canonical spec.yaml not found in the source run."),
        ],
    )
    def test_missing_run_file_is_capture_failed(
        self, tmp_path: Path, missing: str, message: str
    ) -> None:
        """Each required file of the canonical run is named when missing."""
        run_dir = make_run(tmp_path)
        (run_dir / missing).unlink()
        with pytest.raises(FlowdropError) as info:
            _capture(tmp_path, run_dir)
        assert (info.value.code, info.value.message) == (ErrorCode.CAPTURE_FAILED, message)


class TestClasses:
    def test_per_class_files_and_full_coverage(self, tmp_path: Path) -> None:
        """Per-class series get ``_<classId>`` files, classes and ``full`` coverage."""
        classes = {
            "order_arrivals": {"Retail": [6, 6, 7, 7], "Wholesale": [4, 5, 5, 6]},
        }
        out, result = _capture(tmp_path, make_run(tmp_path, classes=classes))
        manifest = json.loads((out / "manifest.json").read_text())
        paths = [f["path"] for f in manifest["files"]]
        assert paths[:3] == [
            "OrderService_arrivals.csv",
            "OrderService_arrivals_Retail.csv",
            "OrderService_arrivals_Wholesale.csv",
        ]
        assert manifest["supportsClassMetrics"] is True
        assert manifest["classes"] == ["Retail", "Wholesale"]
        assert manifest["classCoverage"] == "full"
        rows = (out / "OrderService_arrivals_Retail.csv").read_text().splitlines()
        assert rows[1] == "0,Retail,6"
        assert len(result.files) == 8


def test_dry_run_writes_nothing(tmp_path: Path) -> None:
    """A dry-run capture plans the files and writes nothing."""
    out, result = _capture(tmp_path, make_run(tmp_path), dry_run=True)
    assert len(result.files) == 6
    assert list(out.iterdir()) == []


CLASS_TEMPLATES = (
    "transportation-basic-classes",
    "supply-chain-multi-tier-classes",
    "it-document-processing-continuous",
)


@pytest.mark.parametrize("template_id", CLASS_TEMPLATES)
def test_a_class_template_bundle_holds_every_per_class_semantics_series(
    template_id: str, tmp_path: Path
) -> None:
    """Capture binds every index entry of a topology semantics series, per class too: the
    classed expressions the class pass now reaches (e.g. served_airport, restock_losses,
    *_dlq_served_zero) are in the bundle."""
    from flowdrop.core import engine
    from tests.realtemplates import real_template_paths

    path = next((p for p in real_template_paths() if p.stem == template_id), None)
    if path is None:
        pytest.skip("real FlowTime templates not found")
    engine.simulate(engine.load_template(path), {}, tmp_path / "run", rng_seed=7)
    (tmp_path / "bundle").mkdir()
    capture_run(tmp_path / "run", tmp_path / "bundle", now=NOW)
    manifest = json.loads((tmp_path / "bundle" / "manifest.json").read_text())
    spec = yaml.safe_load((tmp_path / "run" / "spec.yaml").read_text(encoding="utf-8-sig"))
    fields = ("arrivals", "served", "errors", "externalDemand", "queueDepth", "capacity")
    bound = [
        str(tnode["semantics"][f]).split("/")[-1].split("@")[0]
        for tnode in spec["topology"]["nodes"]
        for f in fields
        if tnode["semantics"].get(f)
    ]
    index = json.loads((tmp_path / "run/series/index.json").read_text(encoding="utf-8-sig"))
    per_class: dict[str, int] = {}
    for entry in index["series"]:
        if entry["kind"] == "flow" and entry["class"] != "DEFAULT":
            name = entry["id"].split("@")[0]
            per_class[name] = per_class.get(name, 0) + 1
    # one file per (topology node, metric, class entry of the bound series)
    classed = [f for f in manifest["files"] if f["classId"] != "DEFAULT"]
    assert len(classed) == sum(per_class.get(series, 0) for series in bound)
    assert manifest["supportsClassMetrics"] is True
