"""Several files replaced together: one data sync, the renames in order, one sync of the renames."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from flowdrop.core.errors import ErrorCode, FlowdropError
from flowdrop.core.fs import storage
from flowdrop.core.fs.writebatch import WriteBatch, sync_paths
from tests.failpointing import armed


class _Recorder:
    """Counts syncfs (through a fake libc) and fsync calls, and logs them with the renames."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, fstype: str) -> None:
        self.events: list[str] = []
        real_fsync, real_replace, real_rename = os.fsync, os.replace, os.rename
        monkeypatch.setattr(storage, "_libc", self)
        monkeypatch.setattr(storage, "filesystem_type", lambda _path: fstype)

        def fsync(fd: int) -> None:
            self.events.append("fsync " + Path(os.readlink(f"/proc/self/fd/{fd}")).name)
            real_fsync(fd)

        def replace(a: os.PathLike[str], b: os.PathLike[str]) -> None:
            self.events.append("rename " + Path(b).name)
            real_replace(a, b)

        def rename(a: os.PathLike[str], b: os.PathLike[str]) -> None:
            self.events.append("move " + Path(b).name)
            real_rename(a, b)

        monkeypatch.setattr(os, "fsync", fsync)
        monkeypatch.setattr(os, "replace", replace)
        monkeypatch.setattr(os, "rename", rename)

    def syncfs(self, fd: int) -> int:
        self.events.append("syncfs")
        return 0

    def count(self, prefix: str) -> int:
        return sum(1 for event in self.events if event.startswith(prefix))


@pytest.fixture
def world(tmp_path: Path) -> Path:
    for name in ("outbox", "ledger", "work", "quarantine"):
        (tmp_path / name).mkdir()
    (tmp_path / "outbox" / "r.status.json").write_text("old status")
    (tmp_path / "work" / "r.json").write_text("request")
    return tmp_path


def _batch(world: Path) -> WriteBatch:
    batch = WriteBatch()
    batch.write(world / "outbox" / "r.result.json", b"result")
    batch.write(world / "outbox" / "r.status.json", b"new status")
    batch.write(world / "ledger" / "r.json", b"entry")
    batch.vouch_for(world / "work" / "r.json")
    return batch


def test_commit_replaces_every_file_and_leaves_no_temporary(world: Path) -> None:
    batch = _batch(world)
    batch.move(world / "work" / "r.json", world / "quarantine" / "r.json")
    batch.commit()
    assert (world / "outbox" / "r.result.json").read_bytes() == b"result"
    assert (world / "outbox" / "r.status.json").read_bytes() == b"new status"
    assert (world / "ledger" / "r.json").read_bytes() == b"entry"
    assert (world / "quarantine" / "r.json").read_text() == "request"
    leftovers = [p.name for p in world.rglob("*") if p.name.startswith(storage.TEMP_PREFIX)]
    assert leftovers == []


def test_where_syncfs_flushes_a_durable_batch_costs_two_calls_whatever_its_size(
    world: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder = _Recorder(monkeypatch, "ext4")
    _batch(world).commit()
    assert recorder.events == [
        "syncfs",  # the data of the three temporaries and of the vouched request
        "rename r.result.json",
        "rename r.status.json",
        "rename r.json",
        "syncfs",  # the renames (outbox/ and ledger/)
    ]


def test_a_batch_that_need_not_survive_a_cut_costs_one_call(
    world: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder = _Recorder(monkeypatch, "ext4")
    _batch(world).commit(durable=False)
    assert (recorder.count("syncfs"), recorder.count("fsync")) == (1, 0)
    assert recorder.events[0] == "syncfs"  # data first, renames after


def test_on_fuse_every_file_then_every_directory_is_fsynced_around_the_renames(
    world: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """LazyFS is FUSE: syncfs is not forwarded there, so each file and directory is fsynced."""
    recorder = _Recorder(monkeypatch, "fuse.lazyfs")
    _batch(world).commit()
    renames = [i for i, event in enumerate(recorder.events) if event.startswith("rename")]
    before, after = recorder.events[: renames[0]], recorder.events[renames[-1] + 1 :]
    assert recorder.count("syncfs") == 0
    assert len(before) == 4 and all(event.startswith("fsync ") for event in before)
    assert "fsync r.json" in before  # the vouched request file
    assert sorted(after) == ["fsync ledger", "fsync outbox"]


def test_a_single_path_is_fsynced_not_syncfsed(
    world: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """syncfs flushes the whole filesystem: for one file an fsync is the cheaper single call."""
    recorder = _Recorder(monkeypatch, "ext4")
    sync_paths([world / "work" / "r.json"])
    assert recorder.events == ["fsync r.json"]


def test_a_failed_data_sync_renames_nothing_and_names_the_first_file(
    world: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_fsync(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(storage, "filesystem_type", lambda _path: "fuse.lazyfs")
    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(FlowdropError) as caught:
        _batch(world).commit()
    assert caught.value.code is ErrorCode.STORAGE_ERROR
    assert caught.value.message == "Could not write 'r.result.json': Input/output error."
    assert not (world / "outbox" / "r.result.json").exists()
    assert (world / "outbox" / "r.status.json").read_text() == "old status"
    assert not [p for p in world.rglob("*") if p.name.startswith(storage.TEMP_PREFIX)]


def test_a_failure_before_a_rename_keeps_the_earlier_renames_and_no_temporary(
    world: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    batch = WriteBatch()
    batch.write(world / "outbox" / "r.result.json", b"result")
    batch.write(world / "outbox" / "r.status.json", b"new status", before_rename="status_rename")
    with armed(monkeypatch, "status_rename=eio"), pytest.raises(FlowdropError) as caught:
        batch.commit()
    assert caught.value.message == "Could not write 'r.status.json': Input/output error."
    assert (world / "outbox" / "r.result.json").read_bytes() == b"result"
    assert (world / "outbox" / "r.status.json").read_text() == "old status"
    assert not [p for p in world.rglob("*") if p.name.startswith(storage.TEMP_PREFIX)]


def test_moves_follow_the_writes(world: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A quarantine reason is in place before its file moves (never a file without reason)."""
    recorder = _Recorder(monkeypatch, "ext4")
    batch = WriteBatch()
    batch.move(world / "work" / "r.json", world / "quarantine" / "r.json")
    batch.write(world / "quarantine" / "r.json.reason.json", b"reason")
    batch.commit()
    assert [e for e in recorder.events if not e.startswith(("syncfs", "fsync"))] == [
        "rename r.json.reason.json",
        "move r.json",
    ]


def test_vouching_skips_what_is_gone_or_not_a_regular_file(world: Path) -> None:
    os.symlink(world / "work" / "r.json", world / "work" / "link.json")
    batch = WriteBatch()
    batch.write(world / "outbox" / "x.status.json", b"x")
    batch.vouch_for(world / "work" / "gone.json")
    batch.vouch_for(world / "work" / "link.json")
    batch.commit()
    assert (world / "outbox" / "x.status.json").read_bytes() == b"x"


def test_staged_files_are_hidden_until_the_commit_and_a_discard_leaves_nothing(
    world: Path,
) -> None:
    """stage() writes the temporaries only (what fails for space fails there); commit() then
    shows them, discard() removes them."""
    shown = WriteBatch()
    shown.write(world / "a.json", b"A")
    shown.stage()
    assert not (world / "a.json").exists()
    assert len([p for p in world.iterdir() if p.name.startswith(".tmp-a.json.")]) == 1
    shown.commit()
    assert (world / "a.json").read_bytes() == b"A"
    dropped = WriteBatch()
    dropped.write(world / "b.json", b"B")
    dropped.stage()
    dropped.discard()
    assert [p.name for p in world.iterdir() if p.is_file()] == ["a.json"]
