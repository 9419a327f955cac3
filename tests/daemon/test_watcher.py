"""Watcher: filesystem-type detection, a handler that never raises, overflow detection."""

from __future__ import annotations

import logging
from pathlib import Path

from watchdog.events import FileCreatedEvent, FileMovedEvent, FileSystemEvent

from flowdrop.daemon.config import WatchMode
from flowdrop.daemon.testing import wait_until
from flowdrop.daemon.watcher import (
    InboxHandler,
    InboxWatcher,
    OverflowDetector,
    choose_mode,
    is_network_fs,
    mount_for,
)

MOUNTINFO = """\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
40 22 0:35 / /srv/nfs rw,relatime shared:20 - nfs4 server:/export rw,vers=4.2
41 22 0:36 / /srv/smb rw shared:21 - cifs //host/share rw
42 22 0:37 / /mnt/with\\040space rw shared:22 - fuse.sshfs host: rw
43 40 0:38 / /srv/nfs/local rw shared:23 - xfs /dev/sdb1 rw
"""


def test_mount_for_picks_the_longest_mount_point() -> None:
    """Nested mounts and octal-escaped spaces are handled."""
    assert mount_for(Path("/srv/nfs/spool/inbox"), MOUNTINFO).fs_type == "nfs4"  # type: ignore[union-attr]
    assert mount_for(Path("/srv/nfs/local/inbox"), MOUNTINFO).fs_type == "xfs"  # type: ignore[union-attr]
    assert mount_for(Path("/mnt/with space/x"), MOUNTINFO).fs_type == "fuse.sshfs"  # type: ignore[union-attr]
    assert mount_for(Path("/var/x"), MOUNTINFO).fs_type == "ext4"  # type: ignore[union-attr]


def test_auto_mode_polls_on_network_filesystems() -> None:
    """nfs*/cifs/smb3/fuse.* → polling; local → inotify; explicit modes are kept."""
    assert choose_mode(WatchMode.AUTO, Path("/srv/nfs/in"), MOUNTINFO) is WatchMode.POLLING
    assert choose_mode(WatchMode.AUTO, Path("/srv/smb/in"), MOUNTINFO) is WatchMode.POLLING
    assert choose_mode(WatchMode.AUTO, Path("/var/in"), MOUNTINFO) is WatchMode.INOTIFY
    assert choose_mode(WatchMode.POLLING, Path("/var/in"), MOUNTINFO) is WatchMode.POLLING
    assert all(is_network_fs(t) for t in ("nfs", "nfs4", "cifs", "smb3", "fuse.sshfs"))
    assert not is_network_fs("ext4")


def test_handler_enqueues_request_names_only(tmp_path: Path) -> None:
    """created and moved (dest) events for *.json in the inbox are queued; others are not."""
    names: list[str] = []
    handler = InboxHandler(tmp_path, names.append)
    handler.dispatch(FileCreatedEvent(str(tmp_path / "a.json")))
    handler.dispatch(FileMovedEvent(str(tmp_path / ".a.json.tmp"), str(tmp_path / "b.json")))
    handler.dispatch(FileCreatedEvent(str(tmp_path / ".hidden.json")))
    handler.dispatch(FileCreatedEvent(str(tmp_path / "sub" / "c.json")))
    assert names == ["a.json", "b.json"]


def test_handler_swallows_exceptions(tmp_path: Path) -> None:
    """A failing callback must not propagate (it would kill watchdog's dispatcher)."""

    def boom(_name: str) -> None:
        raise RuntimeError("boom")

    handler = InboxHandler(tmp_path, boom)
    handler.dispatch(FileCreatedEvent(str(tmp_path / "a.json")))
    broken: FileSystemEvent = FileCreatedEvent(str(tmp_path / "a.json"))
    object.__setattr__(broken, "src_path", None)
    handler.dispatch(broken)


def test_overflow_warning_from_watchdog_triggers_the_callback() -> None:
    """watchdog's 'Inotify queue overflowed' log line is detected."""
    hits: list[int] = []
    detector = OverflowDetector(lambda: hits.append(1))
    detector.install()
    try:
        logging.getLogger("watchdog.observers.inotify_c").warning(
            "Inotify queue overflowed; filesystem events were lost"
        )
        logging.getLogger("watchdog.observers.inotify_c").warning("something else")
    finally:
        detector.uninstall()
    assert hits == [1]
    assert detector.count == 1


def test_activity_on_a_temp_name_is_a_hint(tmp_path: Path) -> None:
    """Events on '.x.tmp' call the hint (a rename usually follows) but enqueue nothing."""
    names: list[str] = []
    hints: list[int] = []
    handler = InboxHandler(tmp_path, names.append, lambda: hints.append(1))
    handler.dispatch(FileCreatedEvent(str(tmp_path / ".x.json.tmp")))
    handler.dispatch(FileCreatedEvent(str(tmp_path / "y.json")))
    assert (names, hints) == (["y.json"], [1])


def test_rename_inside_the_inbox_is_reported_fast(tmp_path: Path) -> None:
    """With watchdog's 0.5 s move hold disabled, a tmp→final rename arrives in well under it."""
    import time

    names: list[str] = []
    watcher = InboxWatcher(tmp_path, names.append)
    watcher.start()
    try:
        latencies = []
        for index in range(5):
            temp = tmp_path / f".{index}.tmp"
            temp.write_text("{}")
            started = time.monotonic()
            temp.rename(tmp_path / f"{index}.json")
            wait_until(lambda i=index: f"{i}.json" in names, timeout=5, interval=0.001)
            latencies.append(time.monotonic() - started)
    finally:
        watcher.stop()
    assert sorted(latencies)[2] < 0.25
