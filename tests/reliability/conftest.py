"""Fixtures of the reliability suite; the world and the invariant checker are in reliability_world."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from reliability_world import World


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    """A world on the test's tmp_path (the real disk: fsync costs what it costs)."""
    built = World(tmp_path)
    try:
        yield built
    finally:
        built.close()


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[bool]:
    """Mount a tmpfs of ``size`` on ``path``; yields False (plain directory) if not permitted."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = (
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)],
            capture_output=True,
            check=False,
        ).returncode
        == 0
    )
    try:
        yield mounted
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


@pytest.fixture
def fast_world(tmp_path: Path) -> Iterator[World]:
    """A world on a 3 GB tmpfs when mounting is allowed, so floods measure the daemon, not fsync."""
    with tmpfs(tmp_path / "w", "3g") as mounted:
        built = World(tmp_path / "w")
        built.on_tmpfs = mounted
        try:
            yield built
        finally:
            built.close()
