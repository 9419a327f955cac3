"""Removing runs while daemons run: rename aside under the run guard, look again, then delete.

For each run the retention policy let go:

1. take its template's run guard exclusively, without waiting (busy: a request of that template
   is running, so the run is kept) and read ``inbox/`` and ``work/`` once more;
2. rename it to ``.tmp-<runId>.pruned.<hex>`` (crash debris the daemon's start sweep and the next
   prune remove) and release the guard;

then, once for all of them, read the spool again: a run that a request in flight may use now,
or that a result written since the prune started names, is renamed back (if the daemon wrote it
afresh meanwhile, its copy stays and ours goes); the rest is deleted.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

from flowdrop.core.fs.storage import TEMP_PREFIX, fsync_dir
from flowdrop.daemon.config import format_duration
from flowdrop.daemon.inflight import RequestCache, entries, scan_in_flight
from flowdrop.daemon.prunereport import Area, Decision, PruneReport, Reason, age_text, storage_error
from flowdrop.daemon.runguard import try_exclusive
from flowdrop.daemon.runneeds import ResultIndex
from flowdrop.daemon.spool import Spool

PRUNED_MARK = ".pruned."


@dataclass(frozen=True)
class Candidate:
    run_id: str
    template_id: str | None
    age: float
    size: int


class RunRemover:
    def __init__(
        self,
        runs_root: Path,
        spool: Spool,
        cache: RequestCache,
        results: ResultIndex,
        report: PruneReport,
    ) -> None:
        self.root = runs_root
        self.spool = spool
        self.cache = cache
        self.results = results
        self.report = report

    def remove(self, candidates: list[Candidate], limit: float | None) -> None:
        aside: list[tuple[Candidate, Path]] = []
        for candidate in candidates:
            temp = self._rename_aside(candidate)
            if temp is not None:
                aside.append((candidate, temp))
        if not aside:
            return
        # Whatever used a run before it was renamed is now in flight or has a fresh result.
        in_flight = scan_in_flight(self.spool, self.cache)
        fresh = self.results.scan(changed_only=True)
        for candidate, temp in aside:
            run_id = candidate.run_id
            protected = in_flight.protects(run_id, candidate.template_id)
            reason = Reason.IN_FLIGHT
            if protected is None and run_id in fresh:
                reason = Reason.RECENT_RESULT
                protected = f"result of '{fresh[run_id][0]}' was written during the prune"
            if protected is not None:
                self._restore(run_id, temp)
                self._kept(candidate, reason, protected)
                continue
            try:
                shutil.rmtree(temp)
            except OSError as exc:
                self._failed(candidate, "remove", exc)
                continue
            detail = (
                f"{age_text(candidate.age)} old, limit {format_duration(limit)}; nothing names it"
            )
            self.report.decisions.append(
                Decision(
                    Area.RUNS,
                    run_id,
                    True,
                    Reason.EXPIRED,
                    detail,
                    candidate.age,
                    (run_id,),
                    candidate.size,
                )
            )
        with contextlib.suppress(OSError):
            fsync_dir(self.root)

    def _rename_aside(self, candidate: Candidate) -> Path | None:
        """Rename the run aside unless a request of its template runs or may use it."""
        template_id = candidate.template_id
        guard = (
            try_exclusive(self.spool, template_id) if template_id else contextlib.nullcontext(True)
        )
        with guard as free:
            if not free:
                detail = f"a request of template '{template_id}' is running (run guard held)"
                self._kept(candidate, Reason.IN_FLIGHT, detail)
                return None
            # Under the guard, just before the rename: a request that arrived meanwhile counts.
            in_flight = scan_in_flight(self.spool, self.cache)
            protected = in_flight.protects(candidate.run_id, template_id)
            if protected is not None:
                self._kept(candidate, Reason.IN_FLIGHT, protected)
                return None
            temp = (
                self.root / f"{TEMP_PREFIX}{candidate.run_id}{PRUNED_MARK}{uuid.uuid4().hex[:12]}"
            )
            try:
                os.rename(self.root / candidate.run_id, temp)
            except FileNotFoundError:
                self._kept(candidate, Reason.VANISHED, "removed by someone else meanwhile")
                return None
            except OSError as exc:
                self._failed(candidate, "rename", exc)
                return None
            return temp

    def _restore(self, run_id: str, temp: Path) -> None:
        try:
            os.rename(temp, self.root / run_id)
        except OSError:
            # The daemon wrote the run afresh meanwhile (same id, same inputs): keep its copy.
            shutil.rmtree(temp, ignore_errors=True)

    def _kept(self, candidate: Candidate, reason: Reason, detail: str) -> None:
        self.report.decisions.append(
            Decision(
                Area.RUNS,
                candidate.run_id,
                False,
                reason,
                detail,
                candidate.age,
                (candidate.run_id,),
            )
        )

    def _failed(self, candidate: Candidate, action: str, exc: OSError) -> None:
        error = storage_error(action, candidate.run_id, exc)
        self.report.decisions.append(
            Decision(
                Area.RUNS,
                candidate.run_id,
                False,
                Reason.FAILED,
                error.message,
                candidate.age,
                (candidate.run_id,),
                0,
                error,
            )
        )


def sweep_debris(runs_root: Path) -> None:
    """Runs a crashed prune left renamed aside: nobody needed them then; finish the job."""
    for entry in entries(runs_root):
        if entry.name.startswith(TEMP_PREFIX) and PRUNED_MARK in entry.name:
            shutil.rmtree(entry.path, ignore_errors=True)
