"""The inbox's inotify reader: names of what appears, a dead watch noticed, overflow passed on."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import pytest

from flowdrop.daemon import inotifyreader
from flowdrop.daemon.inotifyreader import InotifyReader
from flowdrop.daemon.testing import wait_until
from flowdrop.daemon.watcher import InboxWatcher

pytestmark = pytest.mark.skipif(not inotifyreader.AVAILABLE, reason="watchdog without InotifyFD")


def _reader(inbox: Path, names: list[str], overflows: list[int] | None = None) -> InotifyReader:
    sink = overflows if overflows is not None else []
    reader = InotifyReader(inbox, names.append, lambda: sink.append(1))
    reader.start()
    return reader


def test_a_rename_into_the_inbox_and_a_file_written_in_place_are_reported(
    tmp_path: Path,
) -> None:
    names: list[str] = []
    reader = _reader(tmp_path, names)
    try:
        (tmp_path / ".a.tmp").write_text("{}")
        (tmp_path / ".a.tmp").rename(tmp_path / "a.json")
        (tmp_path / "b.json").write_text("{}")  # cp straight into the inbox: closed after write
        wait_until(lambda: {"a.json", "b.json"} <= set(names), timeout=5, message="names")
    finally:
        reader.stop()
    assert not reader.alive


def test_only_names_that_appear_are_reported_not_reads_or_removals(tmp_path: Path) -> None:
    (tmp_path / "old.json").write_text("{}")
    names: list[str] = []
    reader = _reader(tmp_path, names)
    try:
        (tmp_path / "old.json").read_text()
        os.listdir(tmp_path)
        (tmp_path / "old.json").rename(tmp_path.parent / "claimed.json")  # moved out
        (tmp_path / "marker.json").write_text("{}")
        wait_until(lambda: "marker.json" in names, timeout=5, message="marker")
    finally:
        reader.stop()
    assert "old.json" not in names


def test_a_removed_inbox_leaves_the_reader_dead(tmp_path: Path) -> None:
    """The daemon restarts a dead watch (and rescans): the reader must say it is dead."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    reader = _reader(inbox, [])
    try:
        assert reader.alive
        inbox.rmdir()
        wait_until(lambda: not reader.alive, timeout=5, message="dead reader")
    finally:
        reader.stop()


class _OverflowingFd:
    """Stands in for watchdog's InotifyFD: one queue overflow, then a name, then quiet."""

    def __init__(self) -> None:
        self._batches: list[list[Any]] = [
            [_Event(0x4000, b"")],
            [_Event(0x80, b"after.json")],
        ]
        self._closed = threading.Event()

    def add_callback(self, *_args: Any) -> int:
        return 1

    def read_events(self) -> list[Any]:
        if self._batches:
            return self._batches.pop(0)
        self._closed.wait()
        return []

    def close(self) -> None:
        self._closed.set()


class _Event:
    def __init__(self, mask: int, name: bytes) -> None:
        self.mask, self.name = mask, name


def test_a_queue_overflow_is_passed_on_and_reading_goes_on(tmp_path: Path) -> None:
    names: list[str] = []
    overflows: list[int] = []
    reader = InotifyReader(
        tmp_path, names.append, lambda: overflows.append(1), open_fd=_OverflowingFd
    )
    reader.start()
    try:
        wait_until(lambda: names == ["after.json"], timeout=5, message="name after overflow")
        assert overflows == [1]
        assert reader.alive
    finally:
        reader.stop()


def test_a_failing_callback_does_not_end_the_watch(tmp_path: Path) -> None:
    seen: list[str] = []

    def flaky(name: str) -> None:
        seen.append(name)
        if name == "boom.json":
            raise RuntimeError("a bug in the callback")

    reader = InotifyReader(tmp_path, flaky, lambda: None)
    reader.start()
    try:
        (tmp_path / "boom.json").write_text("{}")
        (tmp_path / "fine.json").write_text("{}")
        wait_until(lambda: "fine.json" in seen, timeout=5, message="second name")
        assert reader.alive
    finally:
        reader.stop()


@pytest.mark.parametrize("observer", [False, True], ids=["reader", "observer"])
def test_the_watcher_notifies_request_names_only(tmp_path: Path, observer: bool) -> None:
    """Temp names never reach the queue, whichever watch serves."""
    names: list[str] = []
    watcher = InboxWatcher(tmp_path, names.append, observer=observer)
    watcher.start()
    try:
        assert watcher.alive
        (tmp_path / ".x.tmp").write_text("{}")
        (tmp_path / ".x.tmp").rename(tmp_path / "x.json")
        wait_until(lambda: "x.json" in names, timeout=5, message="event")
    finally:
        watcher.stop()
    assert not watcher.alive
    assert all(not name.startswith(".") for name in names)


def _inotify_fds() -> int:
    return sum(
        1 for fd in os.listdir("/proc/self/fd") if "inotify" in _readlink(f"/proc/self/fd/{fd}")
    )


def _readlink(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return ""


def test_a_failed_start_leaves_no_inotify_instance_behind(tmp_path: Path) -> None:
    """The daemon retries a dead watch every loop; each failed try must give its instance back
    (there are 128 per user by default)."""
    before = _inotify_fds()
    for _ in range(5):
        reader = InotifyReader(tmp_path / "missing", lambda _n: None, lambda: None)
        with pytest.raises(OSError):
            reader.start()
        assert not reader.alive
    wait_until(lambda: _inotify_fds() == before, timeout=5, message="instances closed")
