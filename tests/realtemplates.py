"""Where the real FlowTime templates are: ``FLOWTIME_TEMPLATES``, else ../shared beside the repo.

In CI (``CI`` set) a missing folder is an error, never a silent skip: the conformance tests must
run there.
"""

from __future__ import annotations

import os
from pathlib import Path


def templates_dir() -> Path | None:
    raw = os.environ.get("FLOWTIME_TEMPLATES")
    if raw:
        return Path(raw)
    sibling = Path(__file__).resolve().parents[2] / "shared" / "flowtime" / "templates"
    return sibling if sibling.is_dir() else None


def real_template_paths() -> list[Path]:
    """Template files for parametrising tests at collection time (empty outside CI if absent)."""
    folder = templates_dir()
    if folder is None or not folder.is_dir():
        if os.environ.get("CI"):
            msg = f"FLOWTIME_TEMPLATES folder not found ({folder}); CI requires it"
            raise RuntimeError(msg)
        return []
    return sorted(folder.glob("*.yaml"))
