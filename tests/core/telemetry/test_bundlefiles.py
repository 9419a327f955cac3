"""Bundle files read once per verified identity (issue #9: a fresh replay re-read every CSV)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from flowdrop.core.errors import ErrorCode, FlowdropError
from flowdrop.core.memo import Memo
from flowdrop.core.telemetry import bundlefiles, trust
from flowdrop.core.telemetry.bundle import BundleManifest, validate_bundle
from tests.core.telemetry.test_bundle import _csv, make_bundle
from tests.opening import count_opens


@pytest.fixture(autouse=True)
def _fresh() -> Iterator[None]:
    bundlefiles.forget_all()
    trust.forget_all()
    yield
    bundlefiles.forget_all()


@pytest.fixture(name="opened")
def _opened(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of the files bundlefiles opens."""
    return count_opens(monkeypatch, bundlefiles)


def _values(bundle: Path, manifest: BundleManifest, name: str = "A_arrivals.csv") -> list[float]:
    return bundlefiles.read_values(manifest.facts[name], manifest.bins).tolist()


def test_an_unchanged_file_is_read_once_for_values_and_bytes(
    tmp_path: Path, opened: list[str]
) -> None:
    bundle = make_bundle(tmp_path)
    for _ in range(3):
        manifest = validate_bundle(bundle, "key")
        assert _values(bundle, manifest) == [1.0, 2.0, 3.0]
        data = bundlefiles.read_bytes(manifest.facts["A_arrivals.csv"])
        assert data == (bundle / "A_arrivals.csv").read_bytes()
    assert opened == ["A_arrivals.csv"]


def test_values_are_shared_read_only(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path)
    manifest = validate_bundle(bundle, "key")
    known = manifest.facts["A_arrivals.csv"]
    values = bundlefiles.read_values(known, 3)
    assert not values.flags.writeable
    assert bundlefiles.read_values(known, 3) is values


def test_a_rewritten_bundle_is_read_again(tmp_path: Path, opened: list[str]) -> None:
    """New bytes under a new manifest hash: a new fact, so the new values, never the old."""
    bundle = make_bundle(tmp_path)
    assert _values(bundle, validate_bundle(bundle, "key")) == [1.0, 2.0, 3.0]
    data = _csv(["4", "5", "6"])
    (bundle / "A_arrivals.csv").write_bytes(data)
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["files"][0]["hash"] = "sha256:" + hashlib.sha256(data).hexdigest()
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    assert _values(bundle, validate_bundle(bundle, "key")) == [4.0, 5.0, 6.0]
    assert opened == ["A_arrivals.csv", "A_arrivals.csv"]


def test_a_file_changed_after_its_check_is_not_remembered(
    tmp_path: Path, opened: list[str]
) -> None:
    """Its identity moved since the fact was taken: read as it is now, but kept for nobody."""
    bundle = make_bundle(tmp_path)
    known = validate_bundle(bundle, "key").facts["A_arrivals.csv"]
    # Another size: timestamps alone may not move within one clock tick.
    (bundle / "A_arrivals.csv").write_bytes(_csv(["17", "8", "9"]))
    for _ in range(2):
        assert bundlefiles.read_bytes(known) == _csv(["17", "8", "9"])
    assert opened == ["A_arrivals.csv", "A_arrivals.csv"]


def test_read_errors_are_the_run_readers(tmp_path: Path) -> None:
    """A file gone after validation: storage_error as read_series_csv reports it."""
    bundle = make_bundle(tmp_path)
    known = validate_bundle(bundle, "key").facts["A_arrivals.csv"]
    (bundle / "A_arrivals.csv").unlink()
    with pytest.raises(FlowdropError) as caught:
        bundlefiles.read_values(known, 3)
    assert caught.value.code is ErrorCode.STORAGE_ERROR
    assert caught.value.message == (
        "Run file 'A_arrivals.csv' could not be read: FileNotFoundError."
    )
    with pytest.raises(FileNotFoundError):
        bundlefiles.read_bytes(known)


@pytest.mark.parametrize(("entries", "size"), [(2, 10**6), (10, 2 * len(_csv(["1", "2", "3"])))])
def test_the_memo_is_bounded_by_entries_and_bytes(
    tmp_path: Path,
    opened: list[str],
    monkeypatch: pytest.MonkeyPatch,
    entries: int,
    size: int,
) -> None:
    """Two of three files fit: the least recently used one is read again."""
    monkeypatch.setattr(bundlefiles, "_memo", Memo(entries, size))
    names = ["a.csv", "b.csv", "c.csv"]
    bundle = make_bundle(tmp_path, {n: _csv(["1", "2", "3"]) for n in names})
    manifest = validate_bundle(bundle, "key")
    for name in [*names, "b.csv", "c.csv", "a.csv"]:
        bundlefiles.read_bytes(manifest.facts[name])
    assert opened == [*names, "a.csv"]
