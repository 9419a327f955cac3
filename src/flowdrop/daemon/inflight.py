"""What is in flight on a spool: requests in ``inbox/`` and ``work/*/``, and what they may touch.

A request in flight may reuse any run of its template (deterministic run ids) or the run its
``options.runId`` names, and owns the outbox files of its requestId. A file that cannot be read
as a request yet might become one (a writer still at it): it is listed as ``unreadable`` so the
prune keeps every run.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flowdrop.daemon.spool import Spool, is_temp_name


@dataclass
class InFlight:
    """Requests in ``inbox/`` and ``work/*/``: the ids, templates and run ids they may touch."""

    request_ids: set[str] = field(default_factory=set)
    template_ids: set[str] = field(default_factory=set)
    run_ids: set[str] = field(default_factory=set)
    unreadable: list[str] = field(default_factory=list)  # spool-relative names

    def protects(self, run_id: str, template_id: str | None) -> str | None:
        """Why a request in flight may need this run, or None."""
        if run_id in self.run_ids:
            return "a request in flight names it in options.runId"
        if template_id is not None and template_id in self.template_ids:
            return f"a request in flight runs template '{template_id}' (it may reuse this run)"
        if template_id is None and (self.template_ids or self.run_ids):
            return "its template is unknown and requests are in flight"
        return None


class RequestCache:
    """Parsed request files by (path, size, mtime): re-reading the spool stays cheap."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._seen: dict[tuple[str, int, int], Any] = {}

    def read(self, path: Path, info: os.stat_result) -> Any:
        key = (str(path), info.st_size, info.st_mtime_ns)
        if key not in self._seen:
            document: Any = None
            if info.st_size <= self.max_bytes:
                with contextlib.suppress(OSError, ValueError), path.open("rb") as handle:
                    document = json.loads(handle.read(self.max_bytes + 1))
            self._seen[key] = document
        return self._seen[key]


def entries(directory: Path) -> Iterator[os.DirEntry[str]]:
    try:
        with os.scandir(directory) as found:
            yield from found
    except OSError:
        return


def scan_in_flight(spool: Spool, cache: RequestCache) -> InFlight:
    found = InFlight()
    directories = [spool.inbox, *(Path(e.path) for e in entries(spool.work_root) if e.is_dir())]
    for directory in directories:
        for entry in entries(directory):
            if is_temp_name(entry.name):
                continue
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue  # claimed or finished meanwhile
            if not entry.is_file(follow_symlinks=False):
                continue  # symlinks and the like are refused unread: they run nothing
            stem = entry.name.removesuffix(".json")
            found.request_ids.add(stem)
            document = cache.read(Path(entry.path), info)
            if not isinstance(document, dict) or not isinstance(document.get("templateId"), str):
                found.unreadable.append(str(Path(entry.path).relative_to(spool.root)))
                continue
            if isinstance(document.get("requestId"), str):
                found.request_ids.add(document["requestId"])
            found.template_ids.add(document["templateId"])
            options = document.get("options")
            if isinstance(options, dict) and isinstance(options.get("runId"), str):
                found.run_ids.add(options["runId"])
    return found
