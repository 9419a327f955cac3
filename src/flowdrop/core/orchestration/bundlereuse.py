"""Reusing a published telemetry bundle: its summary, recorded warnings and provenance check.

A reused bundle is not regenerated even when it was captured with another seed, template version
or parameters than the request asks for; the result then carries a
``capture_provenance_mismatch`` warning (DESIGN.md, auto-capture rule 5).
"""

from __future__ import annotations

from pathlib import Path

from flowdrop.core.contract import CaptureStatus, CaptureSummary, RunWarning
from flowdrop.core.orchestration.request import RunContext, ValidatedRequest
from flowdrop.core.orchestration.roots import run_warnings
from flowdrop.core.telemetry.bundle import MANIFEST_JSON, BundleInfo, read_bundle_json
from flowdrop.core.telemetry.bundledocs import bundle_file, load_json

PROVENANCE_MISMATCH = "capture_provenance_mismatch"


def reused_capture(
    req: ValidatedRequest, ctx: RunContext, key: str, bundle_dir: Path, reason: str
) -> CaptureSummary:
    """The ``reused`` capture summary of the bundle in ``bundle_dir`` (logged)."""
    info = read_bundle_json(bundle_dir, key)
    warnings = _manifest_warnings(bundle_dir)
    if info is not None:
        warnings.extend(_provenance_mismatch(req, info))
    ctx.log.info("autocapture_reused", sourceRunId=info.source_run_id if info else None)
    return CaptureSummary(
        status=CaptureStatus.REUSED,
        reason=reason,
        capture_key=key,
        source_run_id=info.source_run_id if info else None,
        warnings=warnings,
    )


def _manifest_warnings(bundle_dir: Path) -> list[RunWarning]:
    """The capture warnings recorded in a bundle (validation happens before the replay)."""
    try:
        manifest, info = bundle_file(bundle_dir, MANIFEST_JSON, field=MANIFEST_JSON)
        if info is None:
            raise FileNotFoundError(MANIFEST_JSON)
        raw = load_json(manifest, info, "utf-8-sig")
        items = raw.get("warnings") or []
        return run_warnings(items)
    except (OSError, ValueError, AttributeError):
        return []


def _provenance_mismatch(req: ValidatedRequest, info: BundleInfo) -> list[RunWarning]:
    template = req.template
    differences = []
    if info.template_id != template.id or info.template_version != template.version:
        differences.append(f"template {info.template_id} {info.template_version}")
    if info.rng_seed != req.seed:
        differences.append(f"rng seed {info.rng_seed}")
    if info.parameters_hash != req.parameters_hash:
        differences.append("parameters")
    if not differences:
        return []
    message = (
        f"Reused bundle '{info.capture_key}' was captured with a different "
        f"{', '.join(differences)} than this request asks for; it was reused anyway "
        "(set options.forceCapture to regenerate it)."
    )
    return [RunWarning(code=PROVENANCE_MISMATCH, message=message)]
