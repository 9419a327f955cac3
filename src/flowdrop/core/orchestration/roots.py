"""The configured roots: template lookup in the template roots, and the run store under RunsRoot.

A run directory ``RunsRoot/<runId>`` is written into a hidden staging directory beside it and
made visible with one rename (:func:`flowdrop.core.fs.storage.publish_dir`), so a reader sees no
run or a whole one. A run that is already there is *reused* (FlowTime §2.7): its summary is
read back from ``run.json`` and ``model/metadata.json`` without evaluating anything.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flowdrop.core import engine
from flowdrop.core.contract import Mode, RunSummary, RunWarning
from flowdrop.core.errors import ErrorCode, FlowdropError
from flowdrop.core.fs.sandbox import check_id, resolve_inside
from flowdrop.core.fs.storage import (
    AlreadyPublished,
    PendingRenames,
    StagingError,
    exists_or_restore,
    publish_staged,
)


@dataclass(frozen=True)
class Roots:
    """The only places flowdrop writes (runs, telemetry) and where it finds templates."""

    runs: Path
    telemetry: Path
    templates: tuple[Path, ...]


_lookup_cache: dict[tuple[str, tuple[Any, ...]], Path] = {}
_lookup_guard = threading.Lock()


def _directory_state(directories: tuple[Path, ...]) -> tuple[Any, ...]:
    """What ``find_template``'s answer depends on: every template file's name, size and mtime."""
    state: list[Any] = []
    for directory in directories:
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError:
            state.append((str(directory), None))
            continue
        for entry in entries:
            if entry.name.endswith((".yaml", ".yml")):
                info = entry.stat()
                state.append((str(directory), entry.name, info.st_size, info.st_mtime_ns))
    return tuple(state)


def find_template(template_id: str, directories: tuple[Path, ...]) -> Path:
    """``engine.find_template``, memoised per template id while no template file changes.

    The engine parses every template to find one by ``metadata.id``; a daemon asks for the same
    few ids over and over, so the answer is kept until a file is added, removed or modified.
    """
    key = (template_id, _directory_state(directories))
    with _lookup_guard:
        cached = _lookup_cache.get(key)
    if cached is not None and cached.is_file():
        return cached
    found = engine.find_template(template_id, directories)
    with _lookup_guard:
        if len(_lookup_cache) > 256:
            _lookup_cache.clear()
        _lookup_cache[key] = found
    return found


def run_warnings(raw: Any) -> list[RunWarning]:
    """Warnings as FlowTime JSON files hold them (run.json, manifests) -> result warnings."""
    out = []
    for item in raw if isinstance(raw, list) else []:
        if not isinstance(item, dict):
            continue
        bins = item.get("bins")
        out.append(
            RunWarning(
                code=str(item.get("code", "")),
                message=str(item.get("message", "")),
                severity=str(item.get("severity") or "warning"),
                node_id=None if item.get("nodeId") is None else str(item["nodeId"]),
                bins=[int(b) for b in bins] if isinstance(bins, list) else None,
            )
        )
    return out


def _storage_error(action: str, run_id: str, exc: OSError) -> FlowdropError:
    msg = f"Could not {action} run '{run_id}': {exc.strerror or exc}."
    return FlowdropError(ErrorCode.STORAGE_ERROR, msg, runId=run_id, errno=exc.errno)


class RunStore:
    """Run directories under one runs root, for one request.

    ``pending`` holds the request's publishing renames not yet fsynced (the orchestrator
    flushes it before it answers; :class:`~flowdrop.core.fs.storage.PendingRenames`).
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.pending = PendingRenames()

    def path(self, run_id: str) -> Path:
        check_id(run_id, "runId")
        return resolve_inside(self.root, run_id, field="runId")

    def exists(self, run_id: str) -> bool:
        return self.path(run_id).exists()

    def summary(
        self, run_id: str, mode: Mode, template: engine.Template, *, was_reused: bool
    ) -> RunSummary:
        """The result's ``run`` block, read back from the published run."""
        run_dir = self.path(run_id)
        try:
            run_json = json.loads((run_dir / "run.json").read_text(encoding="utf-8-sig"))
        except (OSError, ValueError) as exc:
            msg = (
                f"Run '{run_id}' exists but its run.json is unreadable ({exc.__class__.__name__})."
            )
            raise FlowdropError(ErrorCode.STORAGE_ERROR, msg, runId=run_id) from None
        return self._summary(
            run_id, mode, template, run_json.get("warnings"), was_reused=was_reused
        )

    def _summary(
        self,
        run_id: str,
        mode: Mode,
        template: engine.Template,
        warnings: Any,
        *,
        was_reused: bool,
    ) -> RunSummary:
        return RunSummary(
            run_id=run_id,
            mode=mode,
            template_id=template.id,
            template_version=template.version,
            was_reused=was_reused,
            path=run_id,
            warnings=run_warnings(warnings),
        )

    def reuse(self, run_id: str, mode: Mode, template: engine.Template) -> RunSummary | None:
        """The summary of an existing run ``run_id``, or ``None`` when there is none."""
        run_dir = self.path(run_id)
        if not exists_or_restore(run_dir):
            return None
        metadata_path = run_dir / "model" / "metadata.json"
        try:
            metadata = json.loads(metadata_path.read_text(encoding="utf-8-sig"))
        except (OSError, ValueError):
            metadata = None
        if (
            not isinstance(metadata, dict)
            or metadata.get("templateId") != template.id
            or str(metadata.get("mode", "")).lower() != mode.value
        ):
            msg = (
                f"Run directory '{run_id}' already exists and is not a {mode.value} run of "
                f"'{template.id}'. Enable overwriteExisting to replace it."
            )
            raise FlowdropError(ErrorCode.INVALID_REQUEST, msg, runId=run_id)
        return self.summary(run_id, mode, template, was_reused=True)

    def write(
        self,
        run_id: str,
        mode: Mode,
        template: engine.Template,
        writer: Callable[[Path], Any],
        *,
        replace: bool,
    ) -> RunSummary:
        """Write a run with ``writer(staging_dir)`` and publish it as ``RunsRoot/<run_id>``.

        If another writer published the same id first (a concurrent identical request), that
        run is reused instead.
        """
        self.path(run_id)  # sandbox check
        try:
            info = publish_staged(
                self.root,
                run_id,
                writer,
                replace=replace,
                root=self.root,
                failpoint_name="run_before_publish",
                pending=self.pending,
            )
        except StagingError as exc:
            raise _storage_error("stage", run_id, exc) from exc
        except AlreadyPublished:
            return self.summary(run_id, mode, template, was_reused=True)
        except FlowdropError:
            raise
        except OSError as exc:
            raise _storage_error("write", run_id, exc) from exc
        if isinstance(info, engine.RunInfo):
            # Just rendered: the warnings are at hand, run.json is not read back.
            return self._summary(run_id, mode, template, info.warnings, was_reused=False)
        return self.summary(run_id, mode, template, was_reused=False)
