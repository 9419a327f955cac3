"""The telemetry branch: the TT-M-03.17 auto-capture state machine, then the replay.

    bundle present, no forceCapture      -> reuse it                    capture.status "reused"
    missing/forced, stochastic, no seed  -> stochastic_template         (nothing written)
    missing, autoCapture false           -> capture_missing
    missing (or forced), autoCapture     -> generate it (bundlegeneration.py), capture.status
                                            "generated"
    no captureKey, no captureDirectory   -> capture_key_missing

Every path the request may write (run, lock file, source run) is checked before the first write.
The bundle is validated against the model's grid and the request's bindings before the replay.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flowdrop.core.contract import CaptureStatus, Mode, Phase, RunResult, RunSummary
from flowdrop.core.errors import ErrorCode, FlowdropError
from flowdrop.core.fs.failpoints import failpoint
from flowdrop.core.fs.locking import lock_path
from flowdrop.core.fs.storage import exists_or_restore
from flowdrop.core.orchestration.bundlegeneration import generate_bundle
from flowdrop.core.orchestration.bundlereuse import reused_capture
from flowdrop.core.orchestration.dryrun import telemetry_plan
from flowdrop.core.orchestration.reporting import reported
from flowdrop.core.orchestration.request import RunContext, ValidatedRequest
from flowdrop.core.orchestration.results import run_warning, succeeded
from flowdrop.core.telemetry.bundle import ExpectedGrid, validate_bundle
from flowdrop.core.telemetry.manifest import CaptureWarning
from flowdrop.core.telemetry.replay import replay_bundle


def run_telemetry(req: ValidatedRequest, ctx: RunContext) -> RunResult:
    """Reuse or generate the bundle, then reuse or write the telemetry run."""
    options = req.options
    key, bundle_dir = req.capture_key, req.bundle_dir
    assert key is not None and bundle_dir is not None  # validated for every telemetry request
    ctx.log = ctx.log.bind(captureKey=key, runId=req.target.run_id)
    run_id = req.target.run_id
    present = exists_or_restore(bundle_dir)
    must_generate = options.force_capture or not present
    # Every path this request may write is checked before anything is written.
    if run_id is not None:
        req.store.path(run_id)
    if must_generate:
        lock_path(req.telemetry_root, key)
        assert req.source.run_id is not None
        req.store.path(req.source.run_id)
    if must_generate and not (options.auto_capture or options.force_capture):
        ctx.log.info("autocapture_blocked", reason="autoCapture disabled")
        msg = (
            f"Telemetry bundle '{key}' does not exist under the telemetry root and "
            "options.autoCapture is false: capture it first, or set options.autoCapture to true."
        )
        raise FlowdropError(ErrorCode.CAPTURE_MISSING, msg, captureKey=key)
    if must_generate:
        try:
            req.require_seed("a telemetry bundle is generated from it")
        except FlowdropError as exc:
            ctx.log.info(
                "autocapture_blocked", reason=exc.code.value, reasons=exc.details["reasons"]
            )
            raise
    if options.dry_run:
        return telemetry_plan(req, key, bundle_dir, run_id, must_generate)
    if must_generate:
        capture = generate_bundle(req, ctx, key, bundle_dir)
    else:
        reason = "Bundle already exists under the telemetry root."
        capture = reused_capture(req, ctx, key, bundle_dir, reason)
    generated = capture.status is CaptureStatus.GENERATED
    if run_id is not None and not options.overwrite_existing and not generated:
        summary = req.store.reuse(run_id, Mode.TELEMETRY, req.template)
        if summary is not None:
            return succeeded(req.request_id, summary, capture)
    ctx.progress(Phase.REPLAYING, "Replaying telemetry…")
    with ctx.timed("replay"):
        summary = _replay(req, key, bundle_dir, stale=generated)
    return succeeded(req.request_id, summary, capture)


def _replay(req: ValidatedRequest, key: str, bundle_dir: Path, *, stale: bool) -> RunSummary:
    grid = req.model.grid
    expected = ExpectedGrid(grid.bins, grid.bin_size, grid.bin_unit)
    manifest = validate_bundle(bundle_dir, key, expected=expected)
    for param, name in req.bindings.items():
        if not any(f.path == name for f in manifest.files):
            msg = f"Telemetry bundle '{key}' has no file '{name}' (binding '{param}')."
            raise FlowdropError(ErrorCode.BUNDLE_INVALID, msg, captureKey=key, file=name)
    replay_warnings: list[CaptureWarning] = []
    run_id = req.run_id

    def write(out_dir: Path) -> Any:
        info, warnings = replay_bundle(
            req.model.copy(),
            req.template,
            req.replay_parameters,
            manifest,
            out_dir,
            run_id=run_id,
            input_hash=req.target.input_hash,
            provenance=dict(req.target.provenance),
            now=req.now,
        )
        replay_warnings.extend(warnings)
        failpoint("replay_before_publish")
        return info

    summary = req.store.write(
        run_id,
        Mode.TELEMETRY,
        req.template,
        reported(req, write, Mode.TELEMETRY, bundle_dir=bundle_dir),
        replace=req.options.overwrite_existing or stale,
    )
    extra = [run_warning(w) for w in replay_warnings]
    return summary.model_copy(update={"warnings": [*summary.warnings, *extra]})
