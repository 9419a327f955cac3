"""The instrument itself: LazyFS loses exactly what was not fsynced, and a LazyFS that dies is
reported as an infrastructure failure with its log — never as a pass, never as a flowdrop verdict.

    python3 dev.py test tests/powerloss/test_instrument.py
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from flowdrop.core.fs.storage import atomic_write_bytes
from tests.powerloss.lazyfs import LazyFS, LazyFSDied
from tests.powerloss.powerworld import PowerWorld

pytestmark = pytest.mark.powerloss


def _write(path: Path, data: bytes, *, sync: bool) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)


def test_power_cut_loses_exactly_the_unsynced_data(lazyfs: LazyFS) -> None:
    mnt = lazyfs.mnt
    _write(mnt / "unsynced", b"lost", sync=False)
    _write(mnt / "synced", b"kept", sync=True)
    _write(mnt / ".tmp-renamed", b"lost too", sync=False)
    os.rename(mnt / ".tmp-renamed", mnt / "renamed-without-fsync")
    atomic_write_bytes(mnt / "atomic", b"kept too")
    lazyfs.power_cut()
    assert (mnt / "unsynced").read_bytes() == b""
    assert (mnt / "synced").read_bytes() == b"kept"
    # The classic lost write: the rename survived (metadata), the data did not.
    assert (mnt / "renamed-without-fsync").read_bytes() == b""
    assert (mnt / "atomic").read_bytes() == b"kept too"
    assert lazyfs.cuts == 1 and lazyfs.mounts == 2


def test_armed_crash_fires_on_its_operation_only(lazyfs: LazyFS) -> None:
    mnt = lazyfs.mnt
    lazyfs.arm_crash("rename", "before", "/", r"/victim\.json$")
    _write(mnt / ".tmp-a", b"a", sync=True)
    os.rename(mnt / ".tmp-a", mnt / "bystander.json")  # does not match: LazyFS lives
    lazyfs.assert_alive("after a rename that does not match")
    _write(mnt / ".tmp-b", b"b", sync=False)
    with pytest.raises(OSError):
        os.rename(mnt / ".tmp-b", mnt / "victim.json")
    assert lazyfs.wait_crashed(timeout=10)
    lazyfs.remount()
    assert (mnt / "bystander.json").read_bytes() == b"a"
    assert not (mnt / "victim.json").exists()  # killed *before* the rename
    assert (mnt / ".tmp-b").read_bytes() == b""  # never synced


def test_a_dead_lazyfs_is_an_infrastructure_failure_with_its_log(
    power_world: PowerWorld, lazyfs: LazyFS
) -> None:
    """SIGKILL LazyFS behind the test's back: every check reports LazyFSDied (with the log),
    none passes on the dead mount and none reads as a flowdrop defect."""
    power_world.configure()
    assert lazyfs.proc is not None
    # A check that fails *because* the mount went away is not a flowdrop verdict.
    with (
        pytest.raises(LazyFSDied, match="not a flowdrop verdict") as failure,
        lazyfs.guard("a listing"),
    ):
        os.kill(lazyfs.proc.pid, signal.SIGKILL)
        lazyfs.proc.wait(timeout=10)
        os.listdir(power_world.outbox)
    assert isinstance(failure.value.__cause__, OSError)
    assert "LazyFS log" in str(failure.value) and "running LazyFS" in str(failure.value)
    # And nothing afterwards passes on the dead mount.
    with pytest.raises(LazyFSDied, match="exited with -9"):
        power_world.after_cut(None, "on a dead mount")
    with pytest.raises(LazyFSDied, match="exited with -9"):
        power_world.settled()
    with pytest.raises(LazyFSDied):
        power_world.start()
    with pytest.raises(LazyFSDied), lazyfs.guard("a check that would pass"):
        pass
