"""Fixtures of the power-loss suite: a LazyFS mount that is always unmounted, and a world on it.

LazyFS is built with ``../shared/tools/lazyfs/build.sh`` into the ignored ``build/lazyfs``. Where
it cannot run (not root, no /dev/fuse) the suite is skipped, except under CI (``CI`` set), where
that is an error: the power-loss proof must run there.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.powerloss.lazyfs import LazyFS, LazyFSUnavailable, build, unavailable_reason
from tests.powerloss.powerworld import PowerWorld


@pytest.fixture(scope="session")
def lazyfs_binary() -> Path:
    reason = unavailable_reason()
    try:
        if reason is not None:
            raise LazyFSUnavailable(reason)
        return build()
    except LazyFSUnavailable as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"LazyFS unavailable: {exc}")


@pytest.fixture
def lazyfs(lazyfs_binary: Path, tmp_path: Path) -> Iterator[LazyFS]:
    """LazyFS mounted over ``tmp_path/lazyfs/root`` at ``tmp_path/lazyfs/mnt``; unmounted at the
    end whatever happened (a failed test, a crashed LazyFS, a dead mount)."""
    fs = LazyFS(lazyfs_binary, tmp_path / "lazyfs")
    try:
        fs.mount()
        yield fs
    finally:
        fs.close()


@pytest.fixture
def power_world(lazyfs: LazyFS, tmp_path: Path) -> Iterator[PowerWorld]:
    world = PowerWorld(tmp_path / "world", lazyfs, tmp_path / "sources")
    try:
        yield world
    finally:
        world.kill_daemons()  # before the fixture above unmounts
