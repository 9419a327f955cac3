"""A simulation-mode request: reuse the run named by its id, or simulate and publish it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flowdrop.core import engine
from flowdrop.core.contract import CaptureStatus, CaptureSummary, Mode, Phase, RunResult, RunSummary
from flowdrop.core.orchestration.dryrun import plan
from flowdrop.core.orchestration.job import Job
from flowdrop.core.orchestration.results import succeeded


def run_simulation(job: Job) -> RunResult:
    """Seed rule, run id, dry-run plan, reuse of an existing run, or a fresh simulation."""
    if job.template.declares_rng:
        job.require_seed("it is simulated")
    input_hash = job.input_hash(Mode.SIMULATION, job.parameters, {})
    run_id = job.target_run_id(input_hash)
    if run_id is not None:
        job.store.path(run_id)  # sandbox check before anything is written
    capture = CaptureSummary(
        status=CaptureStatus.NOT_REQUIRED, reason="Simulation runs use no telemetry bundle."
    )
    if job.options.dry_run:
        return plan(job, Mode.SIMULATION, run_id, capture, ["simulate", "publish run"])
    if run_id is not None and not job.options.overwrite_existing:
        summary = job.store.reuse(run_id, Mode.SIMULATION, job.template)
        if summary is not None:
            return succeeded(job.request_id, summary, capture)
    job.progress(Phase.SIMULATING, "Simulating template…")
    with job.timed("simulate"):
        summary = write_simulation(job, run_id or job.fresh_run_id(), input_hash)
    return succeeded(job.request_id, summary, capture)


def write_simulation(job: Job, run_id: str, input_hash: str) -> RunSummary:
    """Simulate the request's parameters into a staged run directory published as ``run_id``."""
    provenance = job.provenance(Mode.SIMULATION, job.parameters, input_hash)
    now = job.clock()

    def write(out_dir: Path) -> Any:
        model = engine.generate_model(job.template, job.parameters, mode="simulation", now=now)
        evaluation = engine.evaluate(model)
        return engine.write_run(
            model,
            evaluation,
            out_dir,
            run_id=run_id,
            template=job.template,
            parameters=job.parameters,
            mode="simulation",
            rng_seed=job.rng_seed,
            input_hash=input_hash,
            provenance=provenance,
            now=now,
        )

    return job.store.write(
        run_id, Mode.SIMULATION, job.template, write, replace=job.options.overwrite_existing
    )
