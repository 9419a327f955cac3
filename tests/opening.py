"""Counting the files a module opens (its caches must not read an unchanged file again)."""

from __future__ import annotations

import builtins
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest


def count_opens(monkeypatch: pytest.MonkeyPatch, module: ModuleType) -> list[str]:
    """The names of the files ``module`` opens with ``open`` from now on, in order."""
    seen: list[str] = []

    def counting(path: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(Path(path).name)
        return builtins.open(path, *args, **kwargs)

    monkeypatch.setattr(module, "open", counting, raising=False)
    return seen
