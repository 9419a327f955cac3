"""Run orchestration with TT-M-03.17 auto-capture: the library call the daemon makes per request.

:func:`orchestrate` turns a :class:`~flowdrop.core.contract.RunRequest` into a
:class:`~flowdrop.core.contract.RunResult`, for success and for every
:class:`~flowdrop.core.errors.FlowdropError` alike; only bugs propagate. The work is split by
concept:

    request.py           the validated request (hashes, run ids, provenance, seed rule), once
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

import contextlib
import time
from collections.abc import Callable
from datetime import UTC, datetime

from flowdrop.core.contract import Mode, Phase, RunRequest, RunResult
from flowdrop.core.errors import FlowdropError
from flowdrop.core.orchestration.autocapture import run_telemetry
from flowdrop.core.orchestration.reporting import name_report, require_report
from flowdrop.core.orchestration.request import ProgressCallback, new_context, validate_request
from flowdrop.core.orchestration.results import error_result
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
    flush: bool = True,
) -> RunResult:
    """Run one request; a :class:`FlowdropError` or an I/O error becomes a failed result.

    Only bugs propagate (the daemon turns them into ``internal_error`` with the same helper).
    ``flush=False`` leaves the last publishing renames (a parent directory's fsync) to a caller
    that syncs the roots' filesystems before it shows the answer, as the daemon's end batch does.
    """
    started = time.perf_counter()
    ctx = new_context(request, request_id, progress or (lambda _p, _m: None))
    req = None
    try:
        ctx.progress(Phase.VALIDATING, "Validating request…")
        with ctx.timed("validate"):
            req = validate_request(request, roots, request_id, clock())
        ctx.log = ctx.log.bind(templateId=req.template.id)
        require_report(req)
        simulation = req.mode is Mode.SIMULATION
        result = run_simulation(req, ctx) if simulation else run_telemetry(req, ctx)
        result = name_report(req, result)
        if flush:
            req.store.pending.flush()  # what the result names is durable before it is answered
    except (FlowdropError, OSError) as exc:
        if req is not None and flush:  # a bundle published before a failed replay: durable too
            with contextlib.suppress(OSError):
                req.store.pending.flush()
        return error_result(request_id, exc)
    ctx.timings["total"] = time.perf_counter() - started
    return result.model_copy(update={"timings": dict(ctx.timings)})
