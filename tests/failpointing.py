"""Failpoints armed for one block of an in-process test (flowdrop.core.fs.failpoints)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

from flowdrop.core.fs import failpoints


@contextlib.contextmanager
def armed(monkeypatch: pytest.MonkeyPatch, spec: str) -> Iterator[None]:
    """``FLOWDROP_FAILPOINTS=spec`` inside the block only, hit counts starting afresh."""
    monkeypatch.setenv(failpoints.ENV, spec)
    failpoints.reset()
    try:
        yield
    finally:
        monkeypatch.delenv(failpoints.ENV)
        failpoints.reset()
