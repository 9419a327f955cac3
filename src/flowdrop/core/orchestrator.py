"""Run orchestration with TT-M-03.17 auto-capture: the library call the daemon makes per request.

:func:`orchestrate` turns a :class:`~flowdrop.core.contract.RunRequest` into a
:class:`~flowdrop.core.contract.RunResult`, for success and for every
:class:`~flowdrop.core.errors.FlowdropError` alike; only bugs propagate. The telemetry branch is
the auto-capture state machine of DESIGN.md:

    bundle present, no forceCapture      -> reuse it                    capture.status "reused"
    missing/forced, stochastic, no seed  -> stochastic_template         (nothing written)
    missing, autoCapture false           -> capture_missing
    missing (or forced), autoCapture     -> lock, re-check, simulate (re-using a deterministic
                                            simulation run), capture to staging, one rename,
                                            bundle.json, replay           capture.status "generated"
    no captureKey, no captureDirectory   -> capture_key_missing

Every write goes to a staging directory under RunsRoot or TelemetryRoot and is published with
one rename; a failure removes the staging directory. Names from the request are checked by
:mod:`flowdrop.core.sandbox` before anything is created.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from flowdrop.core import engine, hashing
from flowdrop.core.artifacts import template_provenance
from flowdrop.core.bundle import (
    MANIFEST_JSON,
    BundleInfo,
    ExpectedGrid,
    publish_bundle,
    read_bundle_json,
    remove_stale_staging,
    stage_bundle,
    validate_bundle,
    write_bundle_json,
)
from flowdrop.core.capture import CaptureWarning, capture_run, format_utc
from flowdrop.core.contract import (
    CaptureStatus,
    CaptureSummary,
    Mode,
    Phase,
    RunPlan,
    RunRequest,
    RunResult,
    RunSummary,
    RunWarning,
    State,
)
from flowdrop.core.errors import ErrorCode, FlowdropError
from flowdrop.core.failpoints import failpoint
from flowdrop.core.locking import capture_lock, lock_path
from flowdrop.core.replay import replay_bundle
from flowdrop.core.roots import Roots, RunStore, find_template, run_warnings
from flowdrop.core.sandbox import check_file_name, check_id, check_root, resolve_inside
from flowdrop.core.storage import remove_tree

__all__ = ["ProgressCallback", "Roots", "orchestrate"]

ProgressCallback = Callable[[Phase, str], None]
DEFAULT_SEED = 123
RNG_KIND = "pcg32"
PROVENANCE_MISMATCH = "capture_provenance_mismatch"

log = structlog.get_logger()


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
        job = _Job(request, roots, request_id, progress or (lambda _p, _m: None), clock)
        return job.run()
    except FlowdropError as exc:
        return RunResult.from_error(request_id, exc)
    except OSError as exc:
        # An I/O failure the lower layers did not word: never claim success, never show a path.
        msg = f"Storage error: {exc.strerror or exc.__class__.__name__}."
        error = FlowdropError(ErrorCode.STORAGE_ERROR, msg, errno=exc.errno)
        return RunResult.from_error(request_id, error)


def _warning(w: CaptureWarning) -> RunWarning:
    return RunWarning(
        code=w.code,
        message=w.message,
        severity=w.severity,
        node_id=w.node_id,
        bins=list(w.bins) if w.bins is not None else None,
    )


class _Job:
    """One request's orchestration; holds the resolved inputs and the timings."""

    def __init__(
        self,
        request: RunRequest,
        roots: Roots,
        request_id: str,
        progress: ProgressCallback,
        clock: Callable[[], datetime],
    ) -> None:
        self.request = request
        self.options = request.options
        self.request_id = request_id
        self.progress = progress
        self.clock = clock
        self.timings: dict[str, float] = {}
        self.runs_root = check_root(roots.runs, "runs root")
        self.telemetry_root = check_root(roots.telemetry, "telemetry root")
        self.template_dirs = roots.templates
        self.store = RunStore(self.runs_root)
        self.log = log.bind(requestId=request_id, templateId=request.template_id)

    @contextmanager
    def _timed(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - started

    # --- validation --------------------------------------------------------------------------

    def run(self) -> RunResult:
        started = time.perf_counter()
        self.progress(Phase.VALIDATING, "Validating request…")
        with self._timed("validate"):
            self._validate()
        simulation = self.request.mode is Mode.SIMULATION
        result = self._simulation() if simulation else self._telemetry()
        self.timings["total"] = time.perf_counter() - started
        return result.model_copy(update={"timings": dict(self.timings)})

    def _validate(self) -> None:
        request, options = self.request, self.options
        if options.run_id is not None:
            check_id(options.run_id, "options.runId")
        telemetry = request.telemetry
        self.capture_directory: str | None = None
        self.bindings: dict[str, str] = {}
        if telemetry is not None:
            if telemetry.capture_directory is not None:
                self.capture_directory = check_id(
                    telemetry.capture_directory, "telemetry.captureDirectory"
                )
            for param, name in telemetry.bindings.items():
                self.bindings[param] = check_file_name(name, f"telemetry.bindings.{param}")
        if request.mode is Mode.SIMULATION and self.bindings:
            msg = "Telemetry bindings were supplied but capture directory is missing."
            raise FlowdropError(ErrorCode.INVALID_REQUEST, msg, field="telemetry.bindings")
        if request.rng is not None and request.rng.kind.lower() != RNG_KIND:
            msg = f"Unsupported rng.kind '{request.rng.kind}'. Expected 'pcg32'."
            raise FlowdropError(ErrorCode.INVALID_REQUEST, msg, field="rng.kind")
        path = find_template(request.template_id, tuple(self.template_dirs))
        self.template = engine.load_template(path)
        self.log = self.log.bind(templateId=self.template.id)
        for param in request.parameters:
            if self.template.parameter(param) is None:
                msg = f"Template '{self.template.id}' has no parameter '{param}'."
                raise FlowdropError(ErrorCode.PARAMETER_INVALID, msg, parameter=param)
        for param in self.bindings:
            if self.template.parameter(param) is None:
                msg = f"Telemetry binding '{param}' does not name a parameter of the template."
                raise FlowdropError(ErrorCode.PARAMETER_INVALID, msg, parameter=param)
        self.seed = request.rng.seed if request.rng is not None else None
        self.parameters = {k: v for k, v in request.parameters.items() if v is not None}
        self.replay_params = dict(self.parameters)
        self.replay_params.update({p: f"file://telemetry/{n}" for p, n in self.bindings.items()})
        # Generating the model validates the parameters before anything is planned or written.
        self.model = engine.generate_model(
            self.template,
            self.replay_params if request.mode is Mode.TELEMETRY else self.parameters,
            mode=request.mode.value,
            now=self.clock(),
        )

    def _input_hash(
        self, mode: Mode, parameters: Mapping[str, Any], bindings: Mapping[str, str]
    ) -> str:
        seed = DEFAULT_SEED if self.seed is None else self.seed
        return hashing.input_hash(
            self.template.id,
            self.template.version,
            mode.value,
            parameters,
            bindings,
            RNG_KIND,
            seed,
        )

    def _target_run_id(self, input_hash: str) -> str | None:
        if self.options.run_id is not None:
            return self.options.run_id
        if self.options.deterministic_run_id:
            return hashing.deterministic_run_id(self.template.id, input_hash)
        return None

    def _source_run_id(self) -> str:
        """The deterministic simulation run a bundle is captured from (reused when present)."""
        sim_hash = self._input_hash(Mode.SIMULATION, self.parameters, {})
        return hashing.deterministic_run_id(self.template.id, sim_hash)

    def _fresh_run_id(self) -> str:
        return f"run_{self.clock():%Y%m%dT%H%M%SZ}_{uuid.uuid4().hex[:8]}"

    def _provenance(
        self, mode: Mode, parameters: Mapping[str, Any], input_hash: str
    ) -> dict[str, Any]:
        return template_provenance(
            self.template,
            parameters,
            mode=mode.value,
            input_hash=input_hash,
            rng_seed=DEFAULT_SEED if self.seed is None else self.seed,
            now=self.clock(),
            telemetry_bindings=self.bindings if mode is Mode.TELEMETRY else None,
        )

    def _require_seed(self, what: str) -> None:
        reasons = list(self.template.stochastic_reasons)
        if not reasons or self.seed is not None:
            return
        listed = ", ".join(reasons)
        msg = (
            f"Template '{self.template.id}' declares randomness ({listed}); {what} only when "
            'the request pins rng.seed, e.g. "rng": {"kind": "pcg32", "seed": 123}.'
        )
        raise FlowdropError(
            ErrorCode.STOCHASTIC_TEMPLATE, msg, templateId=self.template.id, reasons=reasons
        )

    # --- simulation --------------------------------------------------------------------------

    def _simulation(self) -> RunResult:
        if self.template.declares_rng:
            self._require_seed("it is simulated")
        input_hash = self._input_hash(Mode.SIMULATION, self.parameters, {})
        run_id = self._target_run_id(input_hash)
        if run_id is not None:
            self.store.path(run_id)  # sandbox check before anything is written
        capture = CaptureSummary(
            status=CaptureStatus.NOT_REQUIRED, reason="Simulation runs use no telemetry bundle."
        )
        if self.options.dry_run:
            return self._plan(Mode.SIMULATION, run_id, capture, ["simulate", "publish run"])
        if run_id is not None and not self.options.overwrite_existing:
            summary = self.store.reuse(run_id, Mode.SIMULATION, self.template)
            if summary is not None:
                return self._succeeded(summary, capture)
        self.progress(Phase.SIMULATING, "Simulating template…")
        with self._timed("simulate"):
            summary = self._write_simulation(run_id or self._fresh_run_id(), input_hash)
        return self._succeeded(summary, capture)

    def _write_simulation(self, run_id: str, input_hash: str) -> RunSummary:
        provenance = self._provenance(Mode.SIMULATION, self.parameters, input_hash)
        now = self.clock()

        def write(out_dir: Path) -> Any:
            model = engine.generate_model(
                self.template, self.parameters, mode="simulation", now=now
            )
            evaluation = engine.evaluate(model)
            return engine.write_run(
                model,
                evaluation,
                out_dir,
                run_id=run_id,
                template=self.template,
                parameters=self.parameters,
                mode="simulation",
                rng_seed=DEFAULT_SEED if self.seed is None else self.seed,
                input_hash=input_hash,
                provenance=provenance,
                now=now,
            )

        return self.store.write(
            run_id, Mode.SIMULATION, self.template, write, replace=self.options.overwrite_existing
        )

    # --- telemetry ---------------------------------------------------------------------------

    def _capture_key(self) -> str:
        key = self.capture_directory or self.template.capture_key
        if key is None:
            msg = (
                f"Template '{self.template.id}' has no metadata.captureKey and the request names "
                "no bundle: set telemetry.captureDirectory to a bundle under the telemetry root, "
                "or add metadata.captureKey to the template."
            )
            raise FlowdropError(ErrorCode.CAPTURE_KEY_MISSING, msg, templateId=self.template.id)
        return check_id(key, "captureKey")

    def _telemetry(self) -> RunResult:
        key = self._capture_key()
        self.log = self.log.bind(captureKey=key)
        bundle_dir = resolve_inside(self.telemetry_root, key, field="captureKey")
        replay_params = self.replay_params
        input_hash = self._input_hash(Mode.TELEMETRY, replay_params, self.bindings)
        run_id = self._target_run_id(input_hash)
        self.log = self.log.bind(runId=run_id)
        present = bundle_dir.exists()
        must_generate = self.options.force_capture or not present
        # Every path this request may write is checked before anything is written.
        if run_id is not None:
            self.store.path(run_id)
        if must_generate:
            lock_path(self.telemetry_root, key)
            self.store.path(self._source_run_id())
        if must_generate and not (self.options.auto_capture or self.options.force_capture):
            self.log.info("autocapture_blocked", reason="autoCapture disabled")
            msg = (
                f"Telemetry bundle '{key}' does not exist under the telemetry root and "
                "options.autoCapture is false: capture it first, or set options.autoCapture to true."
            )
            raise FlowdropError(ErrorCode.CAPTURE_MISSING, msg, captureKey=key)
        if must_generate:
            try:
                self._require_seed("a telemetry bundle is generated from it")
            except FlowdropError as exc:
                self.log.info(
                    "autocapture_blocked", reason=exc.code.value, reasons=exc.details["reasons"]
                )
                raise
        if self.options.dry_run:
            return self._telemetry_plan(key, bundle_dir, run_id, must_generate)
        if must_generate:
            capture = self._generate(key, bundle_dir)
        else:
            capture = self._reused(
                key, bundle_dir, "Bundle already exists under the telemetry root."
            )
        generated = capture.status is CaptureStatus.GENERATED
        if run_id is not None and not self.options.overwrite_existing and not generated:
            summary = self.store.reuse(run_id, Mode.TELEMETRY, self.template)
            if summary is not None:
                return self._succeeded(summary, capture)
        self.progress(Phase.REPLAYING, "Replaying telemetry…")
        with self._timed("replay"):
            summary = self._replay(
                key,
                bundle_dir,
                run_id or self._fresh_run_id(),
                replay_params,
                input_hash,
                generated,
            )
        return self._succeeded(summary, capture)

    def _reused(self, key: str, bundle_dir: Path, reason: str) -> CaptureSummary:
        info = read_bundle_json(bundle_dir, key)
        warnings = self._manifest_warnings(bundle_dir)
        if info is not None:
            warnings.extend(self._provenance_mismatch(info))
        self.log.info("autocapture_reused", sourceRunId=info.source_run_id if info else None)
        return CaptureSummary(
            status=CaptureStatus.REUSED,
            reason=reason,
            capture_key=key,
            source_run_id=info.source_run_id if info else None,
            warnings=warnings,
        )

    def _manifest_warnings(self, bundle_dir: Path) -> list[RunWarning]:
        """The capture warnings recorded in a bundle (validation happens before the replay)."""
        try:
            raw = json.loads((bundle_dir / MANIFEST_JSON).read_text(encoding="utf-8-sig"))
            items = raw.get("warnings") or []
            return run_warnings(items)
        except (OSError, ValueError, AttributeError):
            return []

    def _provenance_mismatch(self, info: BundleInfo) -> list[RunWarning]:
        expected = hashing.parameters_hash(
            self.template.id, self.template.version, self.seed, self.parameters
        )
        differences = []
        if info.template_id != self.template.id or info.template_version != self.template.version:
            differences.append(f"template {info.template_id} {info.template_version}")
        if info.rng_seed != self.seed:
            differences.append(f"rng seed {info.rng_seed}")
        if info.parameters_hash != expected:
            differences.append("parameters")
        if not differences:
            return []
        message = (
            f"Reused bundle '{info.capture_key}' was captured with a different "
            f"{', '.join(differences)} than this request asks for; it was reused anyway "
            "(set options.forceCapture to regenerate it)."
        )
        return [RunWarning(code=PROVENANCE_MISMATCH, message=message)]

    def _generate(self, key: str, bundle_dir: Path) -> CaptureSummary:
        self.progress(Phase.CAPTURING, "Generating telemetry bundle…")
        self.log.info("autocapture_started", force=self.options.force_capture)
        try:
            with capture_lock(self.telemetry_root, key) as waited:
                self.timings["lockWait"] = waited
                if bundle_dir.exists() and not self.options.force_capture:
                    reason = "Bundle was generated by a concurrent request."
                    return self._reused(key, bundle_dir, reason)
                try:
                    summary = self._capture_locked(key, bundle_dir)
                except OSError as exc:
                    msg = f"Could not generate telemetry bundle '{key}': {exc.strerror or exc}."
                    raise FlowdropError(
                        ErrorCode.STORAGE_ERROR, msg, captureKey=key, errno=exc.errno
                    ) from exc
        except FlowdropError as exc:
            self.log.warning("autocapture_failed", code=exc.code.value, error=exc.message)
            raise
        self.log.info("autocapture_succeeded", sourceRunId=summary.source_run_id)
        return summary

    def _capture_locked(self, key: str, bundle_dir: Path) -> CaptureSummary:
        sim_hash = self._input_hash(Mode.SIMULATION, self.parameters, {})
        sim_run_id = self._source_run_id()
        source = self.store.reuse(sim_run_id, Mode.SIMULATION, self.template)
        if source is None:
            self.progress(Phase.SIMULATING, "Simulating template for the telemetry bundle…")
            with self._timed("simulate"):
                source = self._write_simulation(sim_run_id, sim_hash)
        self.progress(Phase.CAPTURING, "Generating telemetry bundle…")
        with self._timed("capture"):
            remove_stale_staging(self.telemetry_root, key)
            staging = stage_bundle(self.telemetry_root, key)
            try:
                result = capture_run(self.runs_root / source.run_id, staging, now=self.clock())
                info = BundleInfo(
                    created_at_utc=format_utc(self.clock()),
                    source_run_id=source.run_id,
                    template_id=self.template.id,
                    template_version=self.template.version,
                    capture_key=key,
                    parameters_hash=hashing.parameters_hash(
                        self.template.id, self.template.version, self.seed, self.parameters
                    ),
                    rng_seed=self.seed,
                    scenario_hash=result.manifest.get("provenance", {}).get("scenarioHash"),
                )
                write_bundle_json(staging, info)
                failpoint("capture_before_publish")
            except BaseException:
                remove_tree(staging)
                raise
            publish_bundle(staging, bundle_dir, key, replace=bundle_dir.exists())
        reason = (
            "options.forceCapture: bundle regenerated."
            if self.options.force_capture
            else "Bundle was missing; generated from a simulation run."
        )
        return CaptureSummary(
            status=CaptureStatus.GENERATED,
            reason=reason,
            capture_key=key,
            source_run_id=source.run_id,
            warnings=[_warning(w) for w in result.warnings],
        )

    def _replay(
        self,
        key: str,
        bundle_dir: Path,
        run_id: str,
        parameters: Mapping[str, Any],
        input_hash: str,
        stale: bool,
    ) -> RunSummary:
        now = self.clock()
        model = self.model
        grid = model.grid
        expected = ExpectedGrid(grid.bins, grid.bin_size, grid.bin_unit)
        manifest = validate_bundle(bundle_dir, key, expected=expected)
        for param, name in self.bindings.items():
            if not any(f.path == name for f in manifest.files):
                msg = f"Telemetry bundle '{key}' has no file '{name}' (binding '{param}')."
                raise FlowdropError(ErrorCode.BUNDLE_INVALID, msg, captureKey=key, file=name)
        provenance = self._provenance(Mode.TELEMETRY, parameters, input_hash)
        replay_warnings: list[CaptureWarning] = []

        def write(out_dir: Path) -> Any:
            info, warnings = replay_bundle(
                model.copy(),
                self.template,
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

        summary = self.store.write(
            run_id,
            Mode.TELEMETRY,
            self.template,
            write,
            replace=self.options.overwrite_existing or stale,
        )
        extra = [_warning(w) for w in replay_warnings]
        return summary.model_copy(update={"warnings": [*summary.warnings, *extra]})

    # --- results -----------------------------------------------------------------------------

    def _succeeded(self, run: RunSummary, capture: CaptureSummary) -> RunResult:
        return RunResult(
            request_id=self.request_id,
            state=State.SUCCEEDED,
            run=run,
            capture=capture,
            capture_generated=capture.status is CaptureStatus.GENERATED,
            capture_warnings=list(capture.warnings),
        )

    def _telemetry_plan(
        self, key: str, bundle_dir: Path, run_id: str | None, must_generate: bool
    ) -> RunResult:
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
            grid = self.model.grid
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
        return self._plan(Mode.TELEMETRY, run_id, capture, steps)

    def _plan(
        self, mode: Mode, run_id: str | None, capture: CaptureSummary, steps: list[str]
    ) -> RunResult:
        would_reuse = (
            run_id is not None
            and not self.options.overwrite_existing
            and capture.status is not CaptureStatus.PENDING
            and self.store.exists(run_id)
        )
        plan = RunPlan(
            template_id=self.template.id,
            template_version=self.template.version,
            mode=mode,
            run_id=run_id,
            would_reuse_run=would_reuse,
            capture=capture,
            steps=steps,
            parameters=self.parameters,
        )
        return RunResult(
            request_id=self.request_id, state=State.SUCCEEDED, capture=capture, plan=plan
        )
