"""Atomic durable writes and directory publication."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flowdrop.core.errors import ErrorCode, FlowdropError
from flowdrop.core.fs import failpoints, storage
from flowdrop.core.fs.storage import (
    TEMP_PREFIX,
    atomic_write_bytes,
    make_staging_dir,
    publish_dir,
    sweep_stale_temps,
)
from tests.failpointing import armed


def test_atomic_write_replaces_content_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "status.json"
    atomic_write_bytes(target, b"one")
    atomic_write_bytes(target, b"two")
    assert target.read_bytes() == b"two"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["status.json"]


def test_fsync_failure_is_a_storage_error_and_keeps_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "result.json"
    atomic_write_bytes(target, b"old")

    def broken_fsync(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(FlowdropError) as caught:
        atomic_write_bytes(target, b"new", root=tmp_path)
    assert caught.value.code is ErrorCode.STORAGE_ERROR
    assert caught.value.message == "Could not write 'result.json': Input/output error."
    assert caught.value.details == {"path": "result.json", "errno": errno.EIO}
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.json"]


def test_error_messages_never_show_absolute_paths(tmp_path: Path) -> None:
    missing_dir = tmp_path / "gone" / "x.json"
    with pytest.raises(FlowdropError) as caught:
        atomic_write_bytes(missing_dir, b"x", root=tmp_path)
    assert str(tmp_path) not in caught.value.message
    assert caught.value.details["path"] == "gone/x.json"


def test_failpoint_before_rename_leaves_the_final_name_untouched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "r.result.json"
    with armed(monkeypatch, "result_before_rename=enospc"), pytest.raises(FlowdropError) as caught:
        atomic_write_bytes(target, b"{}", failpoint_name="result_before_rename")
    assert caught.value.code is ErrorCode.STORAGE_ERROR
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_publish_dir_makes_the_whole_tree_visible_at_once(tmp_path: Path) -> None:
    staging = make_staging_dir(tmp_path, "bundle")
    assert staging.name.startswith(TEMP_PREFIX)
    (staging / "manifest.json").write_text("{}")
    publish_dir(staging, tmp_path / "bundle")
    assert (tmp_path / "bundle" / "manifest.json").read_text() == "{}"
    assert [p.name for p in tmp_path.iterdir()] == ["bundle"]


def test_publish_dir_refuses_to_clobber_without_replace(tmp_path: Path) -> None:
    (tmp_path / "bundle").mkdir()
    staging = make_staging_dir(tmp_path, "bundle")
    with pytest.raises(FileExistsError):
        publish_dir(staging, tmp_path / "bundle")


def test_publish_dir_with_replace_swaps_the_old_tree(tmp_path: Path) -> None:
    final = tmp_path / "bundle"
    final.mkdir()
    (final / "old.csv").write_text("old")
    staging = make_staging_dir(tmp_path, "bundle")
    (staging / "new.csv").write_text("new")
    publish_dir(staging, final, replace=True)
    assert [p.name for p in final.iterdir()] == ["new.csv"]
    assert [p.name for p in tmp_path.iterdir()] == ["bundle"]


def test_kill_failpoint_kills_the_process_before_the_rename(tmp_path: Path) -> None:
    target = tmp_path / "x.json"
    code = (
        "from pathlib import Path; from flowdrop.core.fs.storage import atomic_write_bytes; "
        f"atomic_write_bytes(Path({str(target)!r}), b'data', failpoint_name='p')"
    )
    env = {**os.environ, failpoints.ENV: "p=kill"}
    proc = subprocess.run([sys.executable, "-c", code], env=env, check=False)
    assert proc.returncode == -9
    assert not target.exists()
    leftovers = [p.name for p in tmp_path.iterdir()]
    assert len(leftovers) == 1 and leftovers[0].startswith(TEMP_PREFIX)


def test_failpoint_with_ordinal_fires_only_on_that_hit(monkeypatch: pytest.MonkeyPatch) -> None:
    with armed(monkeypatch, "p=eio@2"):
        failpoints.failpoint("p")
        with pytest.raises(OSError) as caught:
            failpoints.failpoint("p")
        assert caught.value.errno == errno.EIO
        failpoints.failpoint("p")
        failpoints.failpoint("unrelated")


def test_sweep_removes_only_old_temporaries(tmp_path: Path) -> None:
    old_file = tmp_path / f"{TEMP_PREFIX}a.status.json.123"
    old_file.write_text("{")
    old_dir = make_staging_dir(tmp_path, "run_x")
    (old_dir / "run.json").write_text("{")
    young = tmp_path / f"{TEMP_PREFIX}b.result.json.456"
    young.write_text("{")
    keeper = tmp_path / "c.status.json"
    keeper.write_text("{}")
    for path in (old_file, old_dir, keeper):
        os.utime(path, (1_000, 1_000))
    now = 1_000 + 7_200
    os.utime(young, (now - 10, now - 10))

    removed = sweep_stale_temps(tmp_path, older_than=3_600, now=now)

    assert removed == sorted([old_file.name, old_dir.name])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([young.name, keeper.name])


def test_sweep_of_a_missing_directory_removes_nothing(tmp_path: Path) -> None:
    assert sweep_stale_temps(tmp_path / "absent", older_than=60) == []


class _CountingLibc:
    def __init__(self) -> None:
        self.calls = 0

    def syncfs(self, fd: int) -> int:
        self.calls += 1
        return 0


def _staged_run(parent: Path, files: int) -> Path:
    staging = make_staging_dir(parent, "run")
    (staging / "series").mkdir()
    for index in range(files):
        (staging / "series" / f"s{index}.csv").write_bytes(b"bin_index,value\n0,1\n")
    (staging / "run.json").write_bytes(b"{}")
    return staging


@pytest.mark.parametrize("files", [3, 300])
def test_a_staged_directory_costs_one_syncfs_and_one_directory_fsync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, files: int
) -> None:
    """The budget does not grow with the number of series files."""
    libc = _CountingLibc()
    fsyncs: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(storage, "_libc", libc)
    monkeypatch.setattr(storage, "filesystem_type", lambda _path: "ext4")
    monkeypatch.setattr(os, "fsync", lambda fd: (fsyncs.append(fd), real_fsync(fd))[1])
    publish_dir(_staged_run(tmp_path, files), tmp_path / "run")
    assert (libc.calls, len(fsyncs)) == (1, 1)
    assert (tmp_path / "run" / "run.json").read_bytes() == b"{}"


def test_on_fuse_every_file_is_fsynced_because_syncfs_is_not_forwarded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    libc = _CountingLibc()
    fsyncs: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(storage, "_libc", libc)
    monkeypatch.setattr(storage, "filesystem_type", lambda _path: "fuse.lazyfs")
    monkeypatch.setattr(os, "fsync", lambda fd: (fsyncs.append(fd), real_fsync(fd))[1])
    publish_dir(_staged_run(tmp_path, 5), tmp_path / "run")
    # 6 files + 2 directories of the tree, then the parent directory after the rename.
    assert (libc.calls, len(fsyncs)) == (0, 9)


def test_the_filesystem_type_is_read_from_mountinfo(tmp_path: Path) -> None:
    if not Path("/proc/self/mountinfo").exists():
        pytest.skip("no /proc/self/mountinfo")
    assert storage.filesystem_type(tmp_path) is not None


def test_publish_dir_with_replace_exchanges_without_a_moment_of_absence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """renameat2(RENAME_EXCHANGE) swaps the trees in one step: ``final`` is never renamed aside
    (a power cut between two renames left no run/bundle under its name: power-loss suite)."""
    final, staging = tmp_path / "run", tmp_path / ".tmp-run.new"
    final.mkdir()
    (final / "v").write_text("old")
    staging.mkdir()
    (staging / "v").write_text("new")
    renames: list[tuple[str, str]] = []
    real_rename = os.rename
    monkeypatch.setattr(
        os, "rename", lambda a, b: (renames.append((str(a), str(b))), real_rename(a, b))[1]
    )
    publish_dir(staging, final, replace=True)
    assert (final / "v").read_text() == "new"
    assert renames == []  # one exchange, no rename aside
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_without_exchange_a_crash_between_the_renames_is_undone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where the filesystem cannot exchange (NFS, LazyFS), the old tree renamed aside by a
    publish that crashed before its second rename is put back on the next look, and the debris
    sweep restores rather than deletes it."""
    monkeypatch.setattr(storage, "_exchange", lambda _a, _b: False)
    final, staging = tmp_path / "run", tmp_path / ".tmp-run.new"
    final.mkdir()
    (final / "v").write_text("old")
    staging.mkdir()
    (staging / "v").write_text("new")
    real_rename = os.rename

    def crash_on_second(a: object, b: object) -> None:
        if str(a).endswith(".new"):
            raise KeyboardInterrupt("power cut")
        real_rename(a, b)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "rename", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        publish_dir(staging, final, replace=True)
    monkeypatch.setattr(os, "rename", real_rename)
    assert not final.exists()
    assert storage.exists_or_restore(final)
    assert (final / "v").read_text() == "old"
    # The sweep: an old aside whose final is missing comes back; one beside its final goes.
    real_rename(final, tmp_path / ".tmp-run.old.0123456789ab")
    (tmp_path / ".tmp-other.old.0123456789ab").mkdir()
    (tmp_path / "other").mkdir()
    removed = sweep_stale_temps(tmp_path, older_than=0, now=time.time() + 10)
    assert (final / "v").read_text() == "old"
    assert removed == [".tmp-other.old.0123456789ab", ".tmp-run.new"]  # + the staging debris
    assert not (tmp_path / ".tmp-other.old.0123456789ab").exists()
    assert not (tmp_path / ".tmp-run.old.0123456789ab").exists()


def test_a_later_syncfs_makes_an_earlier_publish_durable_so_one_flush_is_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A source run, a bundle and a replay run of one request: three syncfs and one parent
    fsync instead of three (each syncfs commits the renames published before it)."""
    libc = _CountingLibc()
    fsyncs: list[str] = []
    real_fsync = os.fsync
    monkeypatch.setattr(storage, "_libc", libc)
    monkeypatch.setattr(storage, "filesystem_type", lambda _path: "ext4")

    def fsync(fd: int) -> None:
        fsyncs.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    runs, bundles = tmp_path / "runs", tmp_path / "telemetry"
    runs.mkdir()
    bundles.mkdir()
    pending = storage.PendingRenames()
    publish_dir(_staged_run(runs, 3), runs / "source", pending=pending)
    publish_dir(_staged_run(bundles, 3), bundles / "key", pending=pending)
    publish_dir(_staged_run(runs, 3), runs / "replay", pending=pending)
    assert (libc.calls, fsyncs) == (3, [])
    pending.flush()
    assert fsyncs == [str(runs)]  # only the last rename was left for the flush
    pending.flush()
    assert fsyncs == [str(runs)]


def test_where_syncfs_is_not_a_flush_every_pending_parent_is_fsynced_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fsyncs: list[str] = []
    real_fsync = os.fsync
    monkeypatch.setattr(storage, "filesystem_type", lambda _path: "fuse.lazyfs")

    def fsync(fd: int) -> None:
        fsyncs.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    pending = storage.PendingRenames()
    publish_dir(_staged_run(tmp_path, 1), tmp_path / "a", pending=pending)
    publish_dir(_staged_run(tmp_path, 1), tmp_path / "b", pending=pending)
    assert str(tmp_path) not in fsyncs  # the trees' own files and directories only
    pending.flush()
    assert fsyncs.count(str(tmp_path)) == 1
