"""Shared fixtures: worlds built in tmp_path, and the real FlowTime templates."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def _templates_dir() -> Path | None:
    raw = os.environ.get("FLOWTIME_TEMPLATES")
    if raw:
        return Path(raw)
    sibling = Path(__file__).resolve().parents[2] / "shared" / "flowtime" / "templates"
    return sibling if sibling.is_dir() else None


@pytest.fixture(scope="session")
def flowtime_templates() -> Path:
    """The folder of real FlowTime templates; fails (not skips) in CI when it is missing."""
    folder = _templates_dir()
    if folder is None or not folder.is_dir():
        message = f"FLOWTIME_TEMPLATES folder not found ({folder}); set FLOWTIME_TEMPLATES"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return folder


def real_template_paths() -> list[Path]:
    """Template files for parametrising tests at collection time (empty when absent)."""
    folder = _templates_dir()
    if folder is None or not folder.is_dir():
        if os.environ.get("CI"):
            raise RuntimeError("FLOWTIME_TEMPLATES is required in CI")
        return []
    return sorted(folder.glob("*.yaml"))
