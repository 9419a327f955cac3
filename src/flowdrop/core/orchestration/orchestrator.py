"""Run orchestration with TT-M-03.17 auto-capture: the library call the daemon makes per request.

:func:`orchestrate` turns a :class:`~flowdrop.core.contract.RunRequest` into a
:class:`~flowdrop.core.contract.RunResult`, for success and for every
:class:`~flowdrop.core.errors.FlowdropError` alike; only bugs propagate. The work is split by
concept:

    job.py               validation of the request, input hashes, run ids, provenance, seed rule
    simulationrun.py     the simulation branch (reuse or simulate, staged write)
    autocapture.py       the telemetry branch: the auto-capture state machine and the replay
    bundlereuse.py       a reused bundle's summary and provenance-mismatch warning
    bundlegeneration.py  lock, re-check, simulate, capture to staging, bundle.json, one rename
    dryrun.py            dry-run plans
    results.py           result assembly

Every write goes to a staging directory under RunsRoot or TelemetryRoot and is published with
one rename; a failure removes the staging directory. Names from the request are checked by
:mod:`flowdrop.core.fs.sandbox` before anything is created.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

from flowdrop.core.contract import Mode, Phase, RunRequest, RunResult
from flowdrop.core.errors import ErrorCode, FlowdropError
from flowdrop.core.orchestration.autocapture import run_telemetry
from flowdrop.core.orchestration.job import Job, ProgressCallback
from flowdrop.core.orchestration.roots import Roots
from flowdrop.core.orchestration.simulationrun import run_simulation

__all__ = ["ProgressCallback", "Roots", "orchestrate"]


def _utc_now() -> datetime:
    return datetime.now(UTC)


def orchestrate(
    request: RunRequest,
    roots: Roots,
    *,
    request_id: str,
    progress: ProgressCallback | None = None,
    clock: Callable[[], datetime] = _utc_now,
) -> RunResult:
    """Run one request; a :class:`FlowdropError` becomes a failed :class:`RunResult`."""
    try:
        job = Job(request, roots, request_id, progress or (lambda _p, _m: None), clock)
        return _run(job)
    except FlowdropError as exc:
        return RunResult.from_error(request_id, exc)
    except OSError as exc:
        # An I/O failure the lower layers did not word: never claim success, never show a path.
        msg = f"Storage error: {exc.strerror or exc.__class__.__name__}."
        error = FlowdropError(ErrorCode.STORAGE_ERROR, msg, errno=exc.errno)
        return RunResult.from_error(request_id, error)


def _run(job: Job) -> RunResult:
    started = time.perf_counter()
    job.progress(Phase.VALIDATING, "Validating request…")
    with job.timed("validate"):
        job.validate()
    simulation = job.request.mode is Mode.SIMULATION
    result = run_simulation(job) if simulation else run_telemetry(job)
    job.timings["total"] = time.perf_counter() - started
    return result.model_copy(update={"timings": dict(job.timings)})
