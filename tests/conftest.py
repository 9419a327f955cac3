"""Shared fixtures: worlds built in tmp_path, and the real FlowTime templates."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from flowdrop.daemon.testing import reap_daemons
from tests.realtemplates import templates_dir


@pytest.fixture(autouse=True)
def _fresh_structlog() -> Iterator[None]:
    """A test that runs the CLI configures structlog (level filter included) in-process; undo
    it, so a later test's ``capture_logs`` sees every event whatever ran before."""
    yield
    structlog.reset_defaults()


@pytest.fixture(autouse=True, scope="session")
def _no_daemon_left_behind() -> Iterator[None]:
    """A test that fails before stopping its daemons must not leave them running for hours."""
    yield
    reap_daemons()


@pytest.fixture(scope="session")
def flowtime_templates() -> Path:
    """The folder of real FlowTime templates; fails (not skips) in CI when it is missing."""
    folder = templates_dir()
    if folder is None or not folder.is_dir():
        message = f"FLOWTIME_TEMPLATES folder not found ({folder}); set FLOWTIME_TEMPLATES"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return folder
