"""A simulation-mode request: reuse the run named by its id, or simulate and publish it."""

from __future__ import annotations

from pathlib import Path

from flowdrop.core import engine
from flowdrop.core.contract import CaptureStatus, CaptureSummary, Mode, Phase, RunResult, RunSummary
from flowdrop.core.orchestration.dryrun import plan
from flowdrop.core.orchestration.reporting import reported
from flowdrop.core.orchestration.request import RunContext, RunTarget, ValidatedRequest
from flowdrop.core.orchestration.results import succeeded


def run_simulation(req: ValidatedRequest, ctx: RunContext) -> RunResult:
    """Seed rule, run id, dry-run plan, reuse of an existing run, or a fresh simulation."""
    if req.template.declares_rng:
        req.require_seed("it is simulated")
    run_id = req.target.run_id
    if run_id is not None:
        req.store.path(run_id)  # sandbox check before anything is written
    capture = CaptureSummary(
        status=CaptureStatus.NOT_REQUIRED, reason="Simulation runs use no telemetry bundle."
    )
    if req.options.dry_run:
        return plan(req, Mode.SIMULATION, run_id, capture, ["simulate", "publish run"])
    if run_id is not None and not req.options.overwrite_existing:
        summary = req.store.reuse(run_id, Mode.SIMULATION, req.template)
        if summary is not None:
            return succeeded(req.request_id, summary, capture)
    ctx.progress(Phase.SIMULATING, "Simulating template…")
    with ctx.timed("simulate"):
        summary = write_simulation(req, req.target, req.run_id)
    return succeeded(req.request_id, summary, capture)


def write_simulation(req: ValidatedRequest, target: RunTarget, run_id: str) -> RunSummary:
    """Simulate the request's parameters into a staged run directory published as ``run_id``."""
    # A simulation request's validated model is the one to run; a telemetry request needs the
    # simulation-mode model of its source run, generated here once.
    model = (
        req.model
        if req.mode is Mode.SIMULATION
        else engine.generate_model(req.template, req.parameters, mode="simulation", now=req.now)
    )

    def write(out_dir: Path) -> engine.RunInfo:
        return engine.write_run(
            model,
            engine.evaluate(model),
            out_dir,
            run_id=run_id,
            template=req.template,
            parameters=req.parameters,
            mode="simulation",
            rng_seed=req.rng_seed,
            input_hash=target.input_hash,
            provenance=dict(target.provenance),
            now=req.now,
        )

    return req.store.write(
        run_id,
        Mode.SIMULATION,
        req.template,
        reported(req, write, Mode.SIMULATION),
        replace=req.options.overwrite_existing,
    )
