"""Bundles on disk: bundle.json, validation before replay, publication by one rename."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from flowdrop.core.errors import ErrorCode, FlowdropError
from flowdrop.core.telemetry.bundle import (
    BundleInfo,
    ExpectedGrid,
    build_bundle,
    bundle_exists,
    read_bundle_json,
    validate_bundle,
    write_bundle_json,
)


def _csv(values: list[str], class_id: str = "DEFAULT") -> bytes:
    rows = "".join(f"{i},{class_id},{v}\n" for i, v in enumerate(values))
    return ("bin_index,classId,value\n" + rows).encode()


def make_bundle(root: Path, contents: dict[str, bytes] | None = None, **manifest: Any) -> Path:
    """A hand-made 3-bin bundle with correct hashes unless told otherwise."""
    bundle = root / "key"
    bundle.mkdir()
    contents = contents or {"A_arrivals.csv": _csv(["1", "2", "3"])}
    entries = []
    for name, data in contents.items():
        (bundle / name).write_bytes(data)
        entries.append(
            {
                "nodeId": "A",
                "metric": "Arrivals",
                "path": name,
                "hash": "sha256:" + hashlib.sha256(data).hexdigest(),
                "points": 3,
                "classId": "DEFAULT",
            }
        )
    document = {
        "schemaVersion": 2,
        "grid": {"bins": 3, "binSize": 5, "binUnit": "minutes"},
        "files": entries,
        "warnings": [],
        "provenance": {"runId": "r"},
        "supportsClassMetrics": False,
        "classCoverage": "missing",
    }
    document.update(manifest)
    (bundle / "manifest.json").write_text(json.dumps(document))
    return bundle


def _invalid(bundle: Path, **kwargs: Any) -> FlowdropError:
    with pytest.raises(FlowdropError) as info:
        validate_bundle(bundle, "key", **kwargs)
    assert info.value.code is ErrorCode.BUNDLE_INVALID
    return info.value


class TestValidation:
    def test_valid_bundle_passes(self, tmp_path: Path) -> None:
        """A consistent bundle validates and exposes its grid and files."""
        manifest = validate_bundle(
            make_bundle(tmp_path), "key", expected=ExpectedGrid(3, 5, "minutes")
        )
        assert (manifest.bins, manifest.bin_size, manifest.bin_unit) == (3, 5, "minutes")
        assert [f.path for f in manifest.files] == ["A_arrivals.csv"]

    def test_missing_manifest(self, tmp_path: Path) -> None:
        """No manifest.json: named."""
        bundle = make_bundle(tmp_path)
        (bundle / "manifest.json").unlink()
        error = _invalid(bundle)
        assert error.message == "Telemetry bundle 'key' is invalid: manifest.json is missing."
        assert not bundle_exists(bundle)

    def test_missing_file(self, tmp_path: Path) -> None:
        """A listed file that is absent: named."""
        bundle = make_bundle(tmp_path)
        (bundle / "A_arrivals.csv").unlink()
        assert _invalid(bundle).message == (
            "Telemetry bundle 'key' is invalid: file 'A_arrivals.csv' listed in manifest.json "
            "is missing."
        )

    def test_hash_mismatch(self, tmp_path: Path) -> None:
        """Changed bytes: the file is named, expected and actual hashes in details."""
        bundle = make_bundle(tmp_path)
        (bundle / "A_arrivals.csv").write_bytes(_csv(["1", "2", "4"]))
        error = _invalid(bundle)
        assert error.message == (
            "Telemetry bundle 'key' is invalid: file 'A_arrivals.csv' does not match its "
            "manifest hash."
        )
        assert error.details["expected"] != error.details["actual"]

    def test_row_count_mismatch(self, tmp_path: Path) -> None:
        """A CSV with another number of rows than the grid's bins."""
        bundle = make_bundle(tmp_path, {"A_arrivals.csv": _csv(["1", "2"])})
        assert _invalid(bundle).message == (
            "Telemetry bundle 'key' is invalid: file 'A_arrivals.csv' has 2 rows (manifest says "
            "3); the grid has 3 bins."
        )

    def test_grid_mismatch(self, tmp_path: Path) -> None:
        """The manifest grid must equal the template's."""
        error = _invalid(make_bundle(tmp_path), expected=ExpectedGrid(3, 60, "minutes"))
        assert error.message == (
            "Telemetry bundle 'key' is invalid: its grid (3 x 5 minutes) does not match the "
            "template's (3 x 60 minutes)."
        )

    @pytest.mark.parametrize("path", ["../escape.csv", "/etc/passwd", ".hidden.csv", "a/b.csv"])
    def test_manifest_path_outside_bundle(self, tmp_path: Path, path: str) -> None:
        """A manifest may not point outside its bundle."""
        bundle = make_bundle(tmp_path)
        manifest = json.loads((bundle / "manifest.json").read_text())
        manifest["files"][0]["path"] = path
        (bundle / "manifest.json").write_text(json.dumps(manifest))
        assert _invalid(bundle).message.startswith(
            "Telemetry bundle 'key' is invalid: manifest files[0].path"
        )

    @pytest.mark.parametrize(
        ("override", "message"),
        [
            ({"schemaVersion": 1}, "manifest.json has schemaVersion 1; expected 2."),
            (
                {"grid": {"bins": 0, "binSize": 5}},
                "manifest grid needs positive integer bins and binSize.",
            ),
            ({"files": []}, "manifest.json lists no files."),
        ],
    )
    def test_bad_manifest_fields(
        self, tmp_path: Path, override: dict[str, Any], message: str
    ) -> None:
        """Structural problems of the manifest are named."""
        error = _invalid(make_bundle(tmp_path, **override))
        assert error.message == f"Telemetry bundle 'key' is invalid: {message}"

    def test_a_file_symlinked_out_of_the_bundle_is_path_violation(self, tmp_path: Path) -> None:
        """Same bytes, but behind a symlink that leaves the bundle: refused, never read."""
        bundle = make_bundle(tmp_path)
        outside = tmp_path / "outside.csv"
        (bundle / "A_arrivals.csv").rename(outside)
        (bundle / "A_arrivals.csv").symlink_to(outside)
        with pytest.raises(FlowdropError) as info:
            validate_bundle(bundle, "key")
        assert info.value.code is ErrorCode.PATH_VIOLATION

    def test_a_symlink_within_the_bundle_is_followed(self, tmp_path: Path) -> None:
        """A link to another file of the same bundle stays inside it (the sandbox's rule)."""
        bundle = make_bundle(tmp_path)
        (bundle / "A_arrivals.csv").rename(bundle / "real.csv")
        (bundle / "A_arrivals.csv").symlink_to(bundle / "real.csv")
        manifest = validate_bundle(bundle, "key")
        assert manifest.facts["A_arrivals.csv"][2] == (bundle / "real.csv").stat().st_ino

    def test_bad_metric(self, tmp_path: Path) -> None:
        """Metrics are FlowTime's six names."""
        bundle = make_bundle(tmp_path)
        manifest = json.loads((bundle / "manifest.json").read_text())
        manifest["files"][0]["metric"] = "Latency"
        (bundle / "manifest.json").write_text(json.dumps(manifest))
        assert "unknown metric 'Latency'" in _invalid(bundle).message


class TestBundleJson:
    def test_round_trip(self, tmp_path: Path) -> None:
        """bundle.json is written in field order and read back."""
        info = BundleInfo(
            created_at_utc="2025-01-01T00:00:00.0000000Z",
            source_run_id="run_x",
            template_id="t",
            template_version="1.0.0",
            capture_key="key",
            parameters_hash="sha256:" + "0" * 64,
            rng_seed=5,
            scenario_hash="sha256:" + "1" * 64,
        )
        write_bundle_json(tmp_path, info)
        assert read_bundle_json(tmp_path, "key") == info
        assert list(json.loads((tmp_path / "bundle.json").read_text()))[:3] == [
            "schemaVersion",
            "createdAtUtc",
            "sourceRunId",
        ]

    def test_absent_and_malformed(self, tmp_path: Path) -> None:
        """No bundle.json is fine (hand-made bundle); a broken one is bundle_invalid."""
        assert read_bundle_json(tmp_path, "key") is None
        (tmp_path / "bundle.json").write_text("{}")
        with pytest.raises(FlowdropError) as info:
            read_bundle_json(tmp_path, "key")
        assert info.value.code is ErrorCode.BUNDLE_INVALID


class TestPublication:
    def test_publish_is_one_rename(self, tmp_path: Path) -> None:
        """Staging is hidden while filled; after publish only the final name exists."""
        seen: list[str] = []

        def fill(staging: Path) -> str:
            seen.append(staging.name)
            (staging / "manifest.json").write_text("{}")
            return "filled"

        assert build_bundle(tmp_path, "key", fill, replace=False) == "filled"
        assert seen[0].startswith(".tmp-key.")
        assert [p.name for p in tmp_path.iterdir()] == ["key"]

    def test_publish_over_existing_without_replace_is_capture_failed(self, tmp_path: Path) -> None:
        """A bundle that appeared meanwhile is not clobbered; staging is removed."""
        (tmp_path / "key").mkdir()
        with pytest.raises(FlowdropError) as info:
            build_bundle(tmp_path, "key", lambda staging: None, replace=False)
        assert info.value.code is ErrorCode.CAPTURE_FAILED
        assert [p.name for p in tmp_path.iterdir()] == ["key"]

    def test_publish_replace_swaps(self, tmp_path: Path) -> None:
        """With replace the old bundle is swapped out and removed."""
        (tmp_path / "key").mkdir()
        (tmp_path / "key" / "old").write_text("x")
        build_bundle(tmp_path, "key", lambda s: (s / "new").write_text("y"), replace=True)
        assert [p.name for p in (tmp_path / "key").iterdir()] == ["new"]
        assert [p.name for p in tmp_path.iterdir()] == ["key"]

    def test_a_failing_fill_leaves_nothing(self, tmp_path: Path) -> None:
        """Staging is removed whatever goes wrong while filling."""

        def fill(staging: Path) -> None:
            (staging / "half.csv").write_text("1")
            raise OSError(28, "No space left on device")

        with pytest.raises(OSError):
            build_bundle(tmp_path, "key", fill, replace=False)
        assert list(tmp_path.iterdir()) == []


def test_an_unchanged_bundle_is_not_hashed_again_but_an_edit_is_caught(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Verified once per file identity (issue #9: trust what you verified)."""
    from flowdrop.core.telemetry import bundle as bundle_module
    from flowdrop.core.telemetry import trust

    trust.forget_all()
    bundle_dir = make_bundle(tmp_path)
    hashed: list[Path] = []
    real = bundle_module.sha256_file
    monkeypatch.setattr(bundle_module, "sha256_file", lambda p: (hashed.append(p), real(p))[1])
    validate_bundle(bundle_dir, "key")
    first = len(hashed)
    validate_bundle(bundle_dir, "key")
    assert first > 0 and len(hashed) == first
    victim = sorted(bundle_dir.glob("*.csv"))[0]
    data = victim.read_bytes()
    victim.write_bytes(data[:-2] + (b"9\n" if data[-2:] != b"9\n" else b"8\n"))  # same size
    with pytest.raises(FlowdropError) as caught:
        validate_bundle(bundle_dir, "key")
    assert "does not match its manifest hash" in caught.value.message
