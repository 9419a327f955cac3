"""The sandbox: names from requests are checked before any path exists."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from flowdrop.core.errors import ErrorCode, FlowdropError
from flowdrop.core.fs.sandbox import (
    check_file_name,
    check_id,
    relative_to_root,
    resolve_inside,
)

BAD_IDS = [
    ("", "captureKey is empty; use 1-127 characters from A-Z, a-z, 0-9, '_' and '-'."),
    (
        ".",
        "captureKey '.' refers to a parent or current directory; use 1-127 characters from A-Z, a-z, 0-9, '_' and '-'.",
    ),
    (
        "..",
        "captureKey '..' refers to a parent or current directory; use 1-127 characters from A-Z, a-z, 0-9, '_' and '-'.",
    ),
    (
        "../x",
        "captureKey contains a path separator; use 1-127 characters from A-Z, a-z, 0-9, '_' and '-'.",
    ),
    (
        "/etc",
        "captureKey contains a path separator; use 1-127 characters from A-Z, a-z, 0-9, '_' and '-'.",
    ),
    (
        "a\\b",
        "captureKey contains a path separator; use 1-127 characters from A-Z, a-z, 0-9, '_' and '-'.",
    ),
    (
        "a" * 128,
        "captureKey is longer than 127 characters; use 1-127 characters from A-Z, a-z, 0-9, '_' and '-'.",
    ),
    (
        "a\x00b",
        "captureKey 'a\\x00b' contains characters that are not allowed; use 1-127 characters from A-Z, a-z, 0-9, '_' and '-'.",
    ),
    (
        "a\nb",
        "captureKey 'a\\nb' contains characters that are not allowed; use 1-127 characters from A-Z, a-z, 0-9, '_' and '-'.",
    ),
    (
        "a.b",
        "captureKey 'a.b' contains characters that are not allowed; use 1-127 characters from A-Z, a-z, 0-9, '_' and '-'.",
    ),
    (
        "a b",
        "captureKey 'a b' contains characters that are not allowed; use 1-127 characters from A-Z, a-z, 0-9, '_' and '-'.",
    ),
    (
        "é",
        "captureKey 'é' contains characters that are not allowed; use 1-127 characters from A-Z, a-z, 0-9, '_' and '-'.",
    ),
]


@pytest.mark.parametrize(("value", "message"), BAD_IDS)
def test_check_id_rejects_with_exact_message(value: str, message: str) -> None:
    """Every odd or dangerous id is a ``path_violation`` with a message that echoes no path."""
    with pytest.raises(FlowdropError) as info:
        check_id(value, "captureKey")
    assert info.value.code is ErrorCode.PATH_VIOLATION
    assert info.value.message == message
    assert info.value.details["field"] == "captureKey"


@pytest.mark.parametrize("value", ["a", "warehouse-picker", "A_b-9", "x" * 127])
def test_check_id_accepts_safe_names(value: str) -> None:
    """Safe ids pass unchanged."""
    assert check_id(value, "runId") == value


@pytest.mark.parametrize(
    "value", ["", ".", "..", ".hidden", "a..csv", "a/b.csv", "/abs.csv", "a\x00.csv", "x" * 128]
)
def test_check_file_name_rejects(value: str) -> None:
    """Binding file names: no separators, no ``..``, no leading dot, no control chars."""
    with pytest.raises(FlowdropError) as info:
        check_file_name(value, "telemetry.bindings.x")
    assert info.value.code is ErrorCode.PATH_VIOLATION


def test_check_file_name_accepts_csv_names() -> None:
    """Ordinary capture file names pass."""
    assert check_file_name("OrderService_arrivals.csv", "f") == "OrderService_arrivals.csv"


def test_resolve_inside_rejects_symlink_out_of_root(tmp_path: Path) -> None:
    """A symlink under the root that leads outside is refused, existing or dangling."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    os.symlink(outside, root / "evil")
    os.symlink(tmp_path / "nowhere", root / "dangling")
    for name in ("evil", "dangling"):
        with pytest.raises(FlowdropError) as info:
            resolve_inside(root, name, "child", field="captureKey")
        assert info.value.code is ErrorCode.PATH_VIOLATION
        assert (
            info.value.message
            == "captureKey resolves outside its root (a symlink leads elsewhere)."
        )


def test_resolve_inside_allows_symlinked_root_and_inner_links(tmp_path: Path) -> None:
    """The root itself may be a symlink; links that stay inside are fine."""
    real = tmp_path / "real"
    (real / "a").mkdir(parents=True)
    os.symlink(real, tmp_path / "link")
    os.symlink(real / "a", real / "b")
    path = resolve_inside(tmp_path / "link", "b", "x.csv")
    assert path == real / "b" / "x.csv"
    assert relative_to_root(path, tmp_path / "link") == "b/x.csv"
