"""A bundle's JSON documents parsed once per file identity; paths checked with one lstat."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flowdrop.core.errors import ErrorCode, FlowdropError
from flowdrop.core.memo import Memo
from flowdrop.core.telemetry import bundledocs
from flowdrop.core.telemetry.bundledocs import bundle_file, load_json
from tests.opening import count_opens


@pytest.fixture(autouse=True)
def _fresh() -> Iterator[None]:
    bundledocs.forget_all()
    yield
    bundledocs.forget_all()


@pytest.fixture(name="opened")
def _opened(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of the files bundledocs opens for parsing."""
    return count_opens(monkeypatch, bundledocs)


def _load(bundle: Path, name: str = "manifest.json") -> Any:
    path, info = bundle_file(bundle, name, field=name)
    assert info is not None
    return load_json(path, info, "utf-8-sig")


def test_an_unchanged_document_is_parsed_once(tmp_path: Path, opened: list[str]) -> None:
    (tmp_path / "manifest.json").write_text('{"a": [1, 2]}')
    first = _load(tmp_path)
    assert first == {"a": [1, 2]} and _load(tmp_path) is first
    assert opened == ["manifest.json"]


def test_an_edited_document_is_parsed_again(tmp_path: Path, opened: list[str]) -> None:
    (tmp_path / "manifest.json").write_text('{"a": 1}')
    assert _load(tmp_path) == {"a": 1}
    (tmp_path / "manifest.json").write_text('{"a": 22}')
    assert _load(tmp_path) == {"a": 22}
    replacement = tmp_path / "new.json"
    replacement.write_text('{"a": 33}')
    replacement.replace(tmp_path / "manifest.json")
    assert _load(tmp_path) == {"a": 33}
    assert opened == ["manifest.json"] * 3


def test_what_read_text_would_give(tmp_path: Path) -> None:
    """A BOM, CRLF line endings; a bad document raises read_text's exception, word for word."""
    (tmp_path / "manifest.json").write_bytes(b'\xef\xbb\xbf{\r\n"a":\r\n "x"\r\n}')
    assert _load(tmp_path) == {"a": "x"}
    (tmp_path / "bad.json").write_bytes(b'{\r\n"a":\r\n x}')
    with pytest.raises(ValueError) as ours:
        _load(tmp_path, "bad.json")
    with pytest.raises(ValueError) as theirs:
        json.loads((tmp_path / "bad.json").read_text(encoding="utf-8-sig"))
    assert str(ours.value) == str(theirs.value)


def test_the_memo_is_bounded(
    tmp_path: Path, opened: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bundledocs, "_memo", Memo(2))
    for name in ("a.json", "b.json", "c.json"):
        (tmp_path / name).write_text("{}")
    for name in ("a.json", "b.json", "c.json", "b.json", "c.json", "a.json"):
        _load(tmp_path, name)
    assert opened == ["a.json", "b.json", "c.json", "a.json"]


def test_bundle_file_is_the_sandbox_check(tmp_path: Path) -> None:
    """Missing or a directory: no stat; a link inside the bundle: followed; out of it: refused."""
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "real.json").write_text("{}")
    (bundle / "inside.json").symlink_to(bundle / "real.json")
    (tmp_path / "secret.json").write_text("{}")
    (bundle / "outside.json").symlink_to(tmp_path / "secret.json")
    (bundle / "folder").mkdir()
    assert bundle_file(bundle, "missing.json", field="f")[1] is None
    assert bundle_file(bundle, "folder", field="f")[1] is None
    path, info = bundle_file(bundle, "inside.json", field="f")
    assert info is not None and info.st_ino == (bundle / "real.json").stat().st_ino
    assert path == bundle.resolve() / "inside.json"
    with pytest.raises(FlowdropError) as caught:
        bundle_file(bundle, "outside.json", field="f")
    assert caught.value.code is ErrorCode.PATH_VIOLATION
