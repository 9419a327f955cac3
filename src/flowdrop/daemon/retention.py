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

Racing a running daemon: runs are removed by :mod:`flowdrop.daemon.runremoval` (renamed aside
under the run guard, the spool read again, renamed back if needed, then deleted); what needs a
run is :mod:`flowdrop.daemon.runneeds`, what is in flight :mod:`flowdrop.daemon.inflight`.
One prune runs at a time (``state/locks/prune.lock``). Bundles and the idempotency ledger
(``state/ledger/``) are never pruned.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import time
from pathlib import Path

from flowdrop.core.errors import ErrorCode, FlowdropError
from flowdrop.core.fs.locking import try_flock
from flowdrop.core.fs.storage import TEMP_PREFIX, fsync_dir
from flowdrop.daemon.config import Settings, format_duration
from flowdrop.daemon.inflight import InFlight, RequestCache, entries, scan_in_flight
from flowdrop.daemon.prunereport import (
    Area,
    Decision,
    Limits,
    PruneReport,
    Reason,
    age_text,
    storage_error,
)
from flowdrop.daemon.runneeds import ResultIndex, bundle_sources, template_of, touched
from flowdrop.daemon.runremoval import Candidate, RunRemover, sweep_debris
from flowdrop.daemon.spool import REASON_SUFFIX, RESULT_SUFFIX, STATUS_SUFFIX, Spool


def _stat(path: Path) -> os.stat_result | None:
    try:
        return path.lstat()
    except OSError:
        return None


def _tree_size(path: Path) -> int:
    """Bytes freed by removing ``path``: each inode once (a run's repeated series files are
    hard links to one file, core/engine/artifacts.py)."""
    total = 0
    seen: set[tuple[int, int]] = set()
    for current, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                info = os.lstat(os.path.join(current, name))
                if info.st_nlink > 1:
                    if (info.st_dev, info.st_ino) in seen:
                        continue
                    seen.add((info.st_dev, info.st_ino))
                total += info.st_size
    return total


class Pruner:
    """One pass of the policy over a spool and its roots, recording a decision per entry."""

    def __init__(
        self, settings: Settings, limits: Limits, *, dry_run: bool, now: float | None
    ) -> None:
        self.settings = settings
        self.spool = Spool(settings.spool, "prune")
        self.limits = limits
        self.dry_run = dry_run
        self.now = time.time() if now is None else now
        self.cache = RequestCache(settings.max_request_bytes)
        self.report = PruneReport(limits, dry_run)
        self.results = ResultIndex(self.spool.outbox, self.cache, self.now)

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
        age = self.now - max(touched(i) for _p, i in present)
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
                    error = storage_error("remove", str(path.relative_to(base)), exc)
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

    def prune_runs(self, in_flight: InFlight) -> None:
        root = self.settings.runs_root
        limit = self.limits.runs
        sources, bad_bundles = bundle_sources(self.settings.telemetry_root)
        named = self.results.scan()
        blocked = [*(f"telemetry/{b}" for b in bad_bundles), *in_flight.unreadable]
        candidates: list[Candidate] = []
        for entry in sorted(entries(root), key=lambda e: e.name):
            if entry.name.startswith(".") or not entry.is_dir(follow_symlinks=False):
                continue
            run_dir, run_id = Path(entry.path), entry.name
            infos = [i for i in (_stat(run_dir), _stat(run_dir / "run.json")) if i is not None]
            if not infos:
                continue  # removed meanwhile
            age = self.now - max(touched(i) for i in infos)

            def keep(reason: Reason, detail: str, age: float = age, run_id: str = run_id) -> None:
                self.report.decisions.append(
                    Decision(Area.RUNS, run_id, False, reason, detail, age, (run_id,))
                )

            if len(infos) < 2:
                keep(Reason.NOT_A_RUN, "no run.json: not a run directory")
                continue
            template_id = template_of(run_dir)
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
            candidates.append(Candidate(run_id, template_id, age, _tree_size(run_dir)))
        if not self.dry_run:
            RunRemover(root, self.spool, self.cache, self.results, self.report).remove(
                candidates, limit
            )
            return
        for candidate in candidates:
            detail = (
                f"{age_text(candidate.age)} old, limit {format_duration(limit)}; nothing names it"
            )
            self.report.decisions.append(
                Decision(
                    Area.RUNS,
                    candidate.run_id,
                    True,
                    Reason.EXPIRED,
                    detail,
                    candidate.age,
                    (candidate.run_id,),
                    candidate.size,
                )
            )


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
        pruner.report.errors.append(storage_error("create", "state/locks", exc))
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
            sweep_debris(settings.runs_root)
        pruner.prune_runs(scan_in_flight(spool, pruner.cache))
        # Read again: requests that arrived while the runs were pruned keep their outbox files.
        pruner.prune_outbox(scan_in_flight(spool, pruner.cache))
        pruner.prune_done()
        pruner.prune_quarantine()
    return pruner.report
