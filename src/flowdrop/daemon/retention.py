"""Retention: what ``flowdrop prune`` removes from the spool and the runs root, and what it keeps.

The daemon deletes nothing; this module decides, for every finished file and every run, whether
it has outlived its limit (``retain_*`` config keys, or one ``--older-than`` for all):

- ``done/`` request files, ``outbox/`` status + result pairs and ``quarantine/`` file + reason
  pairs go when the youngest file of the pair is older than the limit — except the outbox files
  of a request in flight (in ``inbox/`` or ``work/``);
- a run directory goes when it is older than the runs limit and nobody needs it: never a run
  named by a bundle's provenance (``bundle.json`` ``sourceRunId``), by a result younger than the
  limit (``run.runId``, ``capture.sourceRunId``, ``plan.runId``), or one a request in flight may
  use (its ``options.runId``, or any run of its template: deterministic run ids are reused).
  When a ``bundle.json`` or a request in flight cannot be read, no run is removed at all.

Age is measured from the later of a file's mtime and ctime (a rename into ``done/`` or the
quarantine updates the ctime), so a file is never older than the moment it was filed.

Racing a running daemon: a run is renamed aside (``.tmp-<runId>.pruned.*``, crash debris the
daemon sweeps) only while its template's run guard is free (:mod:`flowdrop.daemon.runguard`: no
request of that template is running) and the spool shows no request that may use it; then the
spool is read again — requests in flight and results written since the prune started — and any
run that became needed is renamed back before the rest is deleted. One prune runs at a time (``state/locks/prune.lock``). Bundles and the
idempotency ledger (``state/ledger/``) are never pruned.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import time
import uuid
from pathlib import Path
from typing import Any

from flowdrop.core.errors import ErrorBody, ErrorCode, FlowdropError
from flowdrop.core.fs.locking import try_flock
from flowdrop.core.fs.storage import TEMP_PREFIX, fsync_dir
from flowdrop.core.telemetry.bundle import BUNDLE_JSON, read_bundle_json
from flowdrop.daemon.config import Settings, format_duration
from flowdrop.daemon.inflight import InFlight, RequestCache, entries, scan_in_flight
from flowdrop.daemon.prunereport import (
    Area,
    Decision,
    Limits,
    PruneReport,
    Reason,
    age_text,
)
from flowdrop.daemon.runguard import try_exclusive
from flowdrop.daemon.spool import REASON_SUFFIX, RESULT_SUFFIX, STATUS_SUFFIX, Spool

PRUNED_MARK = ".pruned."


# --- helpers -------------------------------------------------------------------------------


def _touched(info: os.stat_result) -> float:
    return max(info.st_mtime, info.st_ctime)


def _stat(path: Path) -> os.stat_result | None:
    try:
        return path.lstat()
    except OSError:
        return None


def _tree_size(path: Path) -> int:
    total = 0
    for current, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(current, name)).st_size
    return total


def _storage_error(action: str, shown: str, exc: OSError) -> ErrorBody:
    message = f"Could not {action} '{shown}': {exc.strerror or exc}."
    return FlowdropError(ErrorCode.STORAGE_ERROR, message, path=shown, errno=exc.errno).body()


def _dig(document: Any, *keys: str) -> str | None:
    for key in keys:
        if not isinstance(document, dict):
            return None
        document = document.get(key)
    return document if isinstance(document, str) else None


def runs_named_by_result(document: Any) -> set[str]:
    """Run ids a result file names: its run, the capture's source run, a dry-run plan's run."""
    names = {
        _dig(document, "run", "runId"),
        _dig(document, "capture", "sourceRunId"),
        _dig(document, "plan", "runId"),
        _dig(document, "plan", "capture", "sourceRunId"),
    }
    return {name for name in names if name}


# --- the pruner ----------------------------------------------------------------------------


class Pruner:
    def __init__(
        self, settings: Settings, limits: Limits, *, dry_run: bool, now: float | None
    ) -> None:
        self.settings = settings
        self.spool = Spool(settings.spool, "prune")
        self.limits = limits
        self.dry_run = dry_run
        self.started = time.time()
        self.now = self.started if now is None else now
        self.cache = RequestCache(settings.max_request_bytes)
        self.report = PruneReport(limits, dry_run)
        self._result_stamps: dict[str, tuple[int, int, int]] = {}

    # --- small areas: done/, outbox/, quarantine/ ---------------------------------------------

    def _decide(
        self,
        area: Area,
        name: str,
        paths: list[Path],
        base: Path,
        protected: str | None = None,
    ) -> None:
        infos = [(p, _stat(p)) for p in paths]
        present = [(p, i) for p, i in infos if i is not None]
        if not present:
            return
        age = self.now - max(_touched(i) for _p, i in present)
        files = tuple(str(p.relative_to(base)) for p, _i in present)
        size = sum(i.st_size for _p, i in present)
        limit = self.limits.of(area)

        def keep(reason: Reason, detail: str) -> None:
            self.report.decisions.append(
                Decision(area, name, False, reason, detail, age, files, size)
            )

        if protected is not None:
            return keep(Reason.IN_FLIGHT, protected)
        if limit is None:
            return keep(Reason.NEVER, f"retain_{area.value} is never")
        if age < limit:
            return keep(Reason.YOUNG, f"{age_text(age)} old, limit {format_duration(limit)}")
        error = None
        if not self.dry_run:
            for path, info in present:
                try:
                    if stat.S_ISDIR(info.st_mode):  # a directory someone dropped, quarantined
                        shutil.rmtree(path)
                    else:
                        path.unlink()  # a symlink goes, never what it points to
                except FileNotFoundError:
                    continue
                except OSError as exc:
                    error = _storage_error("remove", str(path.relative_to(base)), exc)
                    break
            with contextlib.suppress(OSError):
                fsync_dir(paths[0].parent)
        detail = f"{age_text(age)} old, limit {format_duration(limit)}"
        self.report.decisions.append(
            Decision(
                area,
                name,
                error is None,
                Reason.EXPIRED if error is None else Reason.FAILED,
                detail,
                age,
                files,
                size,
                error,
            )
        )
        return None

    def prune_done(self) -> None:
        for entry in sorted(entries(self.spool.done), key=lambda e: e.name):
            if entry.name.startswith(TEMP_PREFIX) or entry.is_dir(follow_symlinks=False):
                continue
            self._decide(Area.DONE, entry.name, [Path(entry.path)], self.spool.root)

    def prune_outbox(self, in_flight: InFlight) -> None:
        groups: dict[str, list[Path]] = {}
        for entry in entries(self.spool.outbox):
            for suffix in (STATUS_SUFFIX, RESULT_SUFFIX):
                if entry.name.endswith(suffix) and not entry.name.startswith(TEMP_PREFIX):
                    groups.setdefault(entry.name.removesuffix(suffix), []).append(Path(entry.path))
        for request_id in sorted(groups):
            protected = None
            if request_id in in_flight.request_ids:
                protected = "the request is in flight (inbox/ or work/)"
            self._decide(
                Area.OUTBOX, request_id, sorted(groups[request_id]), self.spool.root, protected
            )

    def prune_quarantine(self) -> None:
        groups: dict[str, list[Path]] = {}
        for entry in entries(self.spool.quarantine):
            if entry.name.startswith(TEMP_PREFIX):
                continue
            name = entry.name.removesuffix(REASON_SUFFIX)
            groups.setdefault(name, []).append(Path(entry.path))
        for name in sorted(groups):
            self._decide(Area.QUARANTINE, name, sorted(groups[name]), self.spool.root)

    # --- runs ------------------------------------------------------------------------------

    def bundle_sources(self) -> tuple[dict[str, str], list[str]]:
        """run id -> the bundle naming it as its source; and bundles whose provenance is unreadable."""
        sources: dict[str, str] = {}
        unreadable: list[str] = []
        root = self.settings.telemetry_root
        for entry in sorted(entries(root), key=lambda e: e.name):
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

    def results(self, *, changed_only: bool = False) -> dict[str, tuple[str, float]]:
        """run id -> (request id, age) of the youngest result naming it.

        The first call remembers every result file's identity; ``changed_only`` then reads only
        results written since (new files, or replaced ones: a new inode or ctime).
        """
        named: dict[str, tuple[str, float]] = {}
        for entry in entries(self.spool.outbox):
            if not entry.name.endswith(RESULT_SUFFIX) or entry.name.startswith("."):
                continue
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            stamp = (info.st_ino, info.st_mtime_ns, info.st_ctime_ns)
            if changed_only and self._result_stamps.get(entry.name) == stamp:
                continue
            if not changed_only:
                self._result_stamps[entry.name] = stamp
            document = self.cache.read(Path(entry.path), info)
            age = self.now - _touched(info)
            for run_id in runs_named_by_result(document):
                request_id = entry.name.removesuffix(RESULT_SUFFIX)
                if run_id not in named or named[run_id][1] > age:
                    named[run_id] = (request_id, age)
        return named

    def _template_of(self, run_dir: Path) -> str | None:
        with contextlib.suppress(OSError, ValueError):
            raw = (run_dir / "model" / "metadata.json").read_text(encoding="utf-8-sig")
            template_id = json.loads(raw).get("templateId")
            return template_id if isinstance(template_id, str) else None
        return None

    def prune_runs(self, in_flight: InFlight) -> None:
        root = self.settings.runs_root
        limit = self.limits.runs
        sources, bad_bundles = self.bundle_sources()
        named = self.results()
        blocked = [*(f"telemetry/{b}" for b in bad_bundles), *in_flight.unreadable]
        candidates: list[tuple[str, str | None, float, int]] = []
        for entry in sorted(entries(root), key=lambda e: e.name):
            if entry.name.startswith(".") or not entry.is_dir(follow_symlinks=False):
                continue
            run_dir, run_id = Path(entry.path), entry.name
            infos = [i for i in (_stat(run_dir), _stat(run_dir / "run.json")) if i is not None]
            if not infos:
                continue  # removed meanwhile
            age = self.now - max(_touched(i) for i in infos)

            def keep(reason: Reason, detail: str, age: float = age, run_id: str = run_id) -> None:
                self.report.decisions.append(
                    Decision(Area.RUNS, run_id, False, reason, detail, age, (run_id,))
                )

            if len(infos) < 2:
                keep(Reason.NOT_A_RUN, "no run.json: not a run directory")
                continue
            template_id = self._template_of(run_dir)
            if run_id in sources:
                keep(Reason.BUNDLE_SOURCE, f"bundle '{sources[run_id]}' was captured from it")
                continue
            if run_id in named and (limit is None or named[run_id][1] < limit):
                request_id, result_age = named[run_id]
                detail = f"result of '{request_id}' ({age_text(result_age)} old) names it"
                keep(Reason.RECENT_RESULT, detail)
                continue
            protected = in_flight.protects(run_id, template_id)
            if protected is not None:
                keep(Reason.IN_FLIGHT, protected)
                continue
            if blocked:
                keep(Reason.UNCERTAIN, f"cannot read {', '.join(blocked[:3])}: no run is removed")
                continue
            if limit is None:
                keep(Reason.NEVER, "retain_runs is never")
                continue
            if age < limit:
                keep(Reason.YOUNG, f"{age_text(age)} old, limit {format_duration(limit)}")
                continue
            candidates.append((run_id, template_id, age, _tree_size(run_dir)))
        if self.dry_run:
            for run_id, _template, age, size in candidates:
                detail = f"{age_text(age)} old, limit {format_duration(limit)}; nothing names it"
                self.report.decisions.append(
                    Decision(Area.RUNS, run_id, True, Reason.EXPIRED, detail, age, (run_id,), size)
                )
            return
        self._remove_runs(candidates)

    def _remove_runs(self, candidates: list[tuple[str, str | None, float, int]]) -> None:
        """Rename aside, read the spool again, rename back what became needed, delete the rest."""
        root = self.settings.runs_root
        limit = self.limits.runs
        aside: list[tuple[str, str | None, float, int, Path]] = []
        for run_id, template_id, age, size in candidates:
            temp = self._rename_aside(run_id, template_id, age)
            if temp is not None:
                aside.append((run_id, template_id, age, size, temp))
        if not aside:
            return
        # Whatever used a run before it was renamed is now in flight or has a fresh result.
        in_flight = scan_in_flight(self.spool, self.cache)
        fresh = self.results(changed_only=True)
        for run_id, template_id, age, size, temp in aside:
            protected = in_flight.protects(run_id, template_id)
            reason = Reason.IN_FLIGHT
            if protected is None and run_id in fresh:
                reason = Reason.RECENT_RESULT
                protected = f"result of '{fresh[run_id][0]}' was written during the prune"
            if protected is not None:
                self._restore(run_id, temp)
                self._kept_run(run_id, reason, protected, age)
                continue
            try:
                shutil.rmtree(temp)
            except OSError as exc:
                self._failed_run(run_id, age, _storage_error("remove", run_id, exc))
                continue
            detail = f"{age_text(age)} old, limit {format_duration(limit)}; nothing names it"
            self.report.decisions.append(
                Decision(Area.RUNS, run_id, True, Reason.EXPIRED, detail, age, (run_id,), size)
            )
        with contextlib.suppress(OSError):
            fsync_dir(root)

    def _rename_aside(self, run_id: str, template_id: str | None, age: float) -> Path | None:
        """Rename the run aside unless a request of its template runs or may use it."""
        guard = (
            try_exclusive(self.spool, template_id) if template_id else contextlib.nullcontext(True)
        )
        with guard as free:
            if not free:
                detail = f"a request of template '{template_id}' is running (run guard held)"
                self._kept_run(run_id, Reason.IN_FLIGHT, detail, age)
                return None
            # Under the guard, just before the rename: a request that arrived meanwhile counts.
            protected = scan_in_flight(self.spool, self.cache).protects(run_id, template_id)
            if protected is not None:
                self._kept_run(run_id, Reason.IN_FLIGHT, protected, age)
                return None
            root = self.settings.runs_root
            temp = root / f"{TEMP_PREFIX}{run_id}{PRUNED_MARK}{uuid.uuid4().hex[:12]}"
            try:
                os.rename(root / run_id, temp)
            except FileNotFoundError:
                self._kept_run(run_id, Reason.VANISHED, "removed by someone else meanwhile", age)
                return None
            except OSError as exc:
                self._failed_run(run_id, age, _storage_error("rename", run_id, exc))
                return None
            return temp

    def _restore(self, run_id: str, temp: Path) -> None:
        try:
            os.rename(temp, self.settings.runs_root / run_id)
        except OSError:
            # The daemon wrote the run afresh meanwhile (same id, same inputs): keep its copy.
            shutil.rmtree(temp, ignore_errors=True)

    def _kept_run(self, run_id: str, reason: Reason, detail: str, age: float) -> None:
        self.report.decisions.append(
            Decision(Area.RUNS, run_id, False, reason, detail, age, (run_id,))
        )

    def _failed_run(self, run_id: str, age: float, error: ErrorBody) -> None:
        self.report.decisions.append(
            Decision(
                Area.RUNS, run_id, False, Reason.FAILED, error.message, age, (run_id,), 0, error
            )
        )

    def sweep_own_debris(self) -> None:
        """Runs a crashed prune left renamed aside: nobody needed them then; finish the job."""
        for entry in entries(self.settings.runs_root):
            if entry.name.startswith(TEMP_PREFIX) and PRUNED_MARK in entry.name:
                shutil.rmtree(entry.path, ignore_errors=True)


def prune(
    settings: Settings,
    *,
    older_than: float | None = None,
    dry_run: bool = False,
    now: float | None = None,
) -> PruneReport:
    """Apply the retention policy once; never raises for a file it could not remove."""
    limits = Limits.from_settings(settings, older_than)
    pruner = Pruner(settings, limits, dry_run=dry_run, now=now)
    spool = pruner.spool
    lock_dir = spool.locks
    try:
        lock_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        pruner.report.errors.append(_storage_error("create", "state/locks", exc))
        return pruner.report
    with try_flock(lock_dir / "prune.lock") as held:
        if not held:
            message = "Another flowdrop prune is running on this spool; try again later."
            pruner.report.errors.append(
                FlowdropError(
                    ErrorCode.STORAGE_ERROR, message, lock="state/locks/prune.lock"
                ).body()
            )
            return pruner.report
        if not dry_run:
            pruner.sweep_own_debris()
        in_flight = scan_in_flight(spool, pruner.cache)
        pruner.prune_runs(in_flight)
        pruner.prune_outbox(in_flight)
        pruner.prune_done()
        pruner.prune_quarantine()
    return pruner.report
