"""Dry-run plans: what a request would do, computed after validation, with nothing written."""

from __future__ import annotations

from pathlib import Path

from flowdrop.core.contract import CaptureStatus, CaptureSummary, Mode, RunPlan, RunResult, State
from flowdrop.core.orchestration.request import ValidatedRequest
from flowdrop.core.telemetry.bundle import ExpectedGrid, read_bundle_json, validate_bundle


def telemetry_plan(
    req: ValidatedRequest, key: str, bundle_dir: Path, run_id: str | None, must_generate: bool
) -> RunResult:
    """The plan of a telemetry request: generate the bundle, or validate and reuse it."""
    if must_generate:
        capture = CaptureSummary(
            status=CaptureStatus.PENDING,
            reason="Bundle is missing (or forced); it would be generated from a simulation run.",
            capture_key=key,
        )
        steps = [
            "lock captureKey",
            "simulate (or reuse the simulation run)",
            "capture bundle",
            "publish bundle",
            "replay telemetry",
            "publish run",
        ]
    else:
        grid = req.model.grid
        validate_bundle(
            bundle_dir, key, expected=ExpectedGrid(grid.bins, grid.bin_size, grid.bin_unit)
        )
        info = read_bundle_json(bundle_dir, key)
        capture = CaptureSummary(
            status=CaptureStatus.REUSED,
            reason="Bundle already exists under the telemetry root.",
            capture_key=key,
            source_run_id=info.source_run_id if info else None,
        )
        steps = ["validate bundle", "replay telemetry", "publish run"]
    return plan(req, Mode.TELEMETRY, run_id, capture, steps)


def plan(
    req: ValidatedRequest, mode: Mode, run_id: str | None, capture: CaptureSummary, steps: list[str]
) -> RunResult:
    """A succeeded result carrying the :class:`RunPlan` (and whether the run would be reused)."""
    would_reuse = (
        run_id is not None
        and not req.options.overwrite_existing
        and capture.status is not CaptureStatus.PENDING
        and req.store.exists(run_id)
    )
    run_plan = RunPlan(
        template_id=req.template.id,
        template_version=req.template.version,
        mode=mode,
        run_id=run_id,
        would_reuse_run=would_reuse,
        capture=capture,
        steps=steps,
        parameters=dict(req.parameters),
    )
    return RunResult(
        request_id=req.request_id, state=State.SUCCEEDED, capture=capture, plan=run_plan
    )
