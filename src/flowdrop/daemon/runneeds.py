"""What needs a run: bundles captured from it, results naming it, and the run's own template.

- a bundle's ``bundle.json`` names its source run (``sourceRunId``); a bundle without one
  (hand-made) names nothing, one that cannot be read might name any run;
- a result names its run (``run.runId``), the capture's source run (``capture.sourceRunId``)
  and, for a dry run, the planned ones (``plan.runId``, ``plan.capture.sourceRunId``);
- a run's template is ``model/metadata.json`` ``templateId`` (requests of that template may
  reuse it: see :mod:`flowdrop.daemon.inflight`).
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

from flowdrop.core.errors import FlowdropError
from flowdrop.core.telemetry.bundle import BUNDLE_JSON, read_bundle_json
from flowdrop.daemon.inflight import RequestCache, entries
from flowdrop.daemon.spool import RESULT_SUFFIX


def touched(info: os.stat_result) -> float:
    """When an entry was last written or filed: the later of mtime and ctime (renames count)."""
    return max(info.st_mtime, info.st_ctime)


def bundle_sources(telemetry_root: Path) -> tuple[dict[str, str], list[str]]:
    """run id -> the bundle captured from it; and the bundles whose ``bundle.json`` is unreadable."""
    sources: dict[str, str] = {}
    unreadable: list[str] = []
    for entry in sorted(entries(telemetry_root), key=lambda e: e.name):
        if entry.name.startswith(".") or not entry.is_dir(follow_symlinks=False):
            continue
        try:
            info = read_bundle_json(Path(entry.path), entry.name)
        except FlowdropError:
            unreadable.append(f"{entry.name}/{BUNDLE_JSON}")
            continue
        if info is not None:
            sources.setdefault(info.source_run_id, entry.name)
    return sources, unreadable


def _dig(document: Any, *keys: str) -> str | None:
    for key in keys:
        if not isinstance(document, dict):
            return None
        document = document.get(key)
    return document if isinstance(document, str) else None


def runs_named_by_result(document: Any) -> set[str]:
    """Run ids a result file names: its run, the capture's source run, a dry-run plan's runs."""
    names = {
        _dig(document, "run", "runId"),
        _dig(document, "capture", "sourceRunId"),
        _dig(document, "plan", "runId"),
        _dig(document, "plan", "capture", "sourceRunId"),
    }
    return {name for name in names if name}


def template_of(run_dir: Path) -> str | None:
    with contextlib.suppress(OSError, ValueError, AttributeError):
        raw = (run_dir / "model" / "metadata.json").read_text(encoding="utf-8-sig")
        template_id = json.loads(raw).get("templateId")
        return template_id if isinstance(template_id, str) else None
    return None


class ResultIndex:
    """The outbox's result files: which runs they name, and how old the youngest naming each is.

    The first :meth:`scan` remembers every result file's identity; ``changed_only`` then reads
    only results written since (new files, or replaced ones: another inode or ctime).
    """

    def __init__(self, outbox: Path, cache: RequestCache, now: float) -> None:
        self.outbox = outbox
        self.cache = cache
        self.now = now
        self._stamps: dict[str, tuple[int, int, int]] = {}

    def scan(self, *, changed_only: bool = False) -> dict[str, tuple[str, float]]:
        """run id -> (request id, age in seconds) of the youngest result naming it."""
        named: dict[str, tuple[str, float]] = {}
        for entry in entries(self.outbox):
            if not entry.name.endswith(RESULT_SUFFIX) or entry.name.startswith("."):
                continue
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            stamp = (info.st_ino, info.st_mtime_ns, info.st_ctime_ns)
            if changed_only and self._stamps.get(entry.name) == stamp:
                continue
            if not changed_only:
                self._stamps[entry.name] = stamp
            document = self.cache.read(Path(entry.path), info)
            age = self.now - touched(info)
            request_id = entry.name.removesuffix(RESULT_SUFFIX)
            for run_id in runs_named_by_result(document):
                if run_id not in named or named[run_id][1] > age:
                    named[run_id] = (request_id, age)
        return named
