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

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flowdrop.core.contract import CaptureStatus, Mode, Phase, RunResult, RunSummary
from flowdrop.core.errors import ErrorCode, FlowdropError
from flowdrop.core.fs.failpoints import failpoint
from flowdrop.core.fs.locking import lock_path
from flowdrop.core.fs.sandbox import check_id, resolve_inside
from flowdrop.core.orchestration.bundlegeneration import generate_bundle
from flowdrop.core.orchestration.bundlereuse import reused_capture
from flowdrop.core.orchestration.dryrun import telemetry_plan
from flowdrop.core.orchestration.job import Job
from flowdrop.core.orchestration.results import run_warning, succeeded
from flowdrop.core.telemetry.bundle import ExpectedGrid, validate_bundle
from flowdrop.core.telemetry.manifest import CaptureWarning
from flowdrop.core.telemetry.replay import replay_bundle


def capture_key(job: Job) -> str:
    """``telemetry.captureDirectory``, else the template's ``metadata.captureKey``."""
    key = job.capture_directory or job.template.capture_key
    if key is None:
        msg = (
            f"Template '{job.template.id}' has no metadata.captureKey and the request names "
            "no bundle: set telemetry.captureDirectory to a bundle under the telemetry root, "
            "or add metadata.captureKey to the template."
        )
        raise FlowdropError(ErrorCode.CAPTURE_KEY_MISSING, msg, templateId=job.template.id)
    return check_id(key, "captureKey")


# Reserved entry of the hashed telemetry-binding snapshot (not a template parameter name).
CAPTURE_KEY_BINDING = "@captureKey"


def run_telemetry(job: Job) -> RunResult:
    """Reuse or generate the bundle, then reuse or write the telemetry run."""
    options = job.options
    key = capture_key(job)
    job.log = job.log.bind(captureKey=key)
    bundle_dir = resolve_inside(job.telemetry_root, key, field="captureKey")
    replay_params = job.replay_params
    # Which bundle is replayed is an input too: without it, a request naming another bundle
    # (telemetry.captureDirectory) would get the first bundle's replay as a "reused" run.
    hashed_bindings = {**job.bindings, CAPTURE_KEY_BINDING: key}
    input_hash = job.input_hash(Mode.TELEMETRY, replay_params, hashed_bindings)
    run_id = job.target_run_id(input_hash)
    job.log = job.log.bind(runId=run_id)
    present = bundle_dir.exists()
    must_generate = options.force_capture or not present
    # Every path this request may write is checked before anything is written.
    if run_id is not None:
        job.store.path(run_id)
    if must_generate:
        lock_path(job.telemetry_root, key)
        job.store.path(job.source_run_id())
    if must_generate and not (options.auto_capture or options.force_capture):
        job.log.info("autocapture_blocked", reason="autoCapture disabled")
        msg = (
            f"Telemetry bundle '{key}' does not exist under the telemetry root and "
            "options.autoCapture is false: capture it first, or set options.autoCapture to true."
        )
        raise FlowdropError(ErrorCode.CAPTURE_MISSING, msg, captureKey=key)
    if must_generate:
        try:
            job.require_seed("a telemetry bundle is generated from it")
        except FlowdropError as exc:
            job.log.info(
                "autocapture_blocked", reason=exc.code.value, reasons=exc.details["reasons"]
            )
            raise
    if options.dry_run:
        return telemetry_plan(job, key, bundle_dir, run_id, must_generate)
    if must_generate:
        capture = generate_bundle(job, key, bundle_dir)
    else:
        capture = reused_capture(
            job, key, bundle_dir, "Bundle already exists under the telemetry root."
        )
    generated = capture.status is CaptureStatus.GENERATED
    if run_id is not None and not options.overwrite_existing and not generated:
        summary = job.store.reuse(run_id, Mode.TELEMETRY, job.template)
        if summary is not None:
            return succeeded(job.request_id, summary, capture)
    job.progress(Phase.REPLAYING, "Replaying telemetry…")
    with job.timed("replay"):
        summary = _replay(
            job,
            key,
            bundle_dir,
            run_id or job.fresh_run_id(),
            replay_params,
            input_hash,
            generated,
        )
    return succeeded(job.request_id, summary, capture)


def _replay(
    job: Job,
    key: str,
    bundle_dir: Path,
    run_id: str,
    parameters: Mapping[str, Any],
    input_hash: str,
    stale: bool,
) -> RunSummary:
    now = job.clock()
    model = job.model
    grid = model.grid
    expected = ExpectedGrid(grid.bins, grid.bin_size, grid.bin_unit)
    manifest = validate_bundle(bundle_dir, key, expected=expected)
    for param, name in job.bindings.items():
        if not any(f.path == name for f in manifest.files):
            msg = f"Telemetry bundle '{key}' has no file '{name}' (binding '{param}')."
            raise FlowdropError(ErrorCode.BUNDLE_INVALID, msg, captureKey=key, file=name)
    provenance = job.provenance(Mode.TELEMETRY, parameters, input_hash)
    replay_warnings: list[CaptureWarning] = []

    def write(out_dir: Path) -> Any:
        info, warnings = replay_bundle(
            model.copy(),
            job.template,
            parameters,
            bundle_dir,
            manifest,
            out_dir,
            run_id=run_id,
            input_hash=input_hash,
            provenance=provenance,
            now=now,
        )
        replay_warnings.extend(warnings)
        failpoint("replay_before_publish")
        return info

    summary = job.store.write(
        run_id,
        Mode.TELEMETRY,
        job.template,
        write,
        replace=job.options.overwrite_existing or stale,
    )
    extra = [run_warning(w) for w in replay_warnings]
    return summary.model_copy(update={"warnings": [*summary.warnings, *extra]})
