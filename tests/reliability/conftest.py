"""Fixtures of the reliability suite; the world and the invariant checker are in reliability_world."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.reliability.reliability_world import World, tmpfs


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    """A world on the test's tmp_path (the real disk: fsync costs what it costs)."""
    built = World(tmp_path)
    try:
        yield built
    finally:
        built.close()


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
