"""One request, validated: everything the orchestration needs, computed once and frozen.

:func:`validate_request` checks a :class:`~flowdrop.core.contract.RunRequest` against the
sandbox rules and its template (names, bindings, rng kind, parameters, the generated model)
before anything is planned or written, and derives every value a branch needs — input hashes,
run ids, the capture key, provenance — so that the branches take a :class:`ValidatedRequest`
and return results without asking anything back. What does change while a request runs
(progress, timings, the bound logger) lives in the small :class:`RunContext`.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import structlog

from flowdrop.core import engine, hashing
from flowdrop.core.contract import Mode, Phase, RunOptions, RunRequest
from flowdrop.core.engine.artifacts import template_provenance
from flowdrop.core.errors import ErrorCode, FlowdropError
from flowdrop.core.fs.sandbox import check_file_name, check_id, check_root, resolve_inside
from flowdrop.core.orchestration.overrides import check_overrides
from flowdrop.core.orchestration.roots import Roots, RunStore, find_template

ProgressCallback = Callable[[Phase, str], None]
# Reserved entry of the hashed telemetry-binding snapshot (not a template parameter name).
CAPTURE_KEY_BINDING = "@captureKey"

log = structlog.get_logger()


@dataclass(frozen=True)
class RunTarget:
    """A run this request may write: its input hash, id and provenance."""

    input_hash: str
    run_id: str | None  # options.runId, else the deterministic id, else None (a fresh id)
    provenance: Mapping[str, Any]


@dataclass(frozen=True)
class ValidatedRequest:
    request_id: str
    request: RunRequest
    template: engine.Template
    model: engine.Model  # generated for the request's mode; never mutated (replay copies it)
    parameters: Mapping[str, Any]  # the request's non-null parameters
    replay_parameters: Mapping[str, Any]  # plus ``file://telemetry/<name>`` bindings
    bindings: Mapping[str, str]
    seed: int | None  # the request's rng.seed
    now: datetime  # the clock, read once
    runs_root: Path
    telemetry_root: Path
    store: RunStore
    target: RunTarget  # the run this request answers with
    source: RunTarget  # the deterministic simulation a bundle is captured from
    fresh_run_id: str
    parameters_hash: str  # what bundle.json records
    capture_key: str | None = None  # telemetry: the bundle replayed
    bundle_dir: Path | None = None

    @property
    def options(self) -> RunOptions:
        return self.request.options

    @property
    def mode(self) -> Mode:
        return self.request.mode

    @property
    def rng_seed(self) -> int:
        """The seed a run records: the request's, else FlowTime's default."""
        return hashing.DEFAULT_RNG_SEED if self.seed is None else self.seed

    @property
    def run_id(self) -> str:
        return self.target.run_id or self.fresh_run_id

    def require_seed(self, what: str) -> None:
        """``stochastic_template`` unless the template is deterministic or the seed is pinned."""
        reasons = list(self.template.stochastic_reasons)
        if not reasons or self.seed is not None:
            return
        listed = ", ".join(reasons)
        msg = (
            f"Template '{self.template.id}' declares randomness ({listed}); {what} only when "
            f'the request pins rng.seed, e.g. "rng": {{"kind": "{hashing.RNG_KIND}", '
            f'"seed": {hashing.DEFAULT_RNG_SEED}}}.'
        )
        raise FlowdropError(
            ErrorCode.STOCHASTIC_TEMPLATE, msg, templateId=self.template.id, reasons=reasons
        )


@dataclass
class RunContext:
    """What changes while a request runs: progress reports, phase timings, the bound logger."""

    progress: ProgressCallback
    log: Any
    timings: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def timed(self, name: str) -> Iterator[None]:
        """Add the time spent in the block to ``timings[name]``."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - started


def new_context(request: RunRequest, request_id: str, progress: ProgressCallback) -> RunContext:
    return RunContext(progress, log.bind(requestId=request_id, templateId=request.template_id))


def validate_request(
    request: RunRequest, roots: Roots, request_id: str, now: datetime
) -> ValidatedRequest:
    """Check the request, load its template and model, derive its names; raises on error."""
    options = request.options
    runs_root = check_root(roots.runs, "runs root")
    telemetry_root = check_root(roots.telemetry, "telemetry root")
    if options.run_id is not None:
        check_id(options.run_id, "options.runId")
    telemetry = request.telemetry
    capture_directory: str | None = None
    bindings: dict[str, str] = {}
    if telemetry is not None:
        if telemetry.capture_directory is not None:
            capture_directory = check_id(telemetry.capture_directory, "telemetry.captureDirectory")
        for param, name in telemetry.bindings.items():
            bindings[param] = check_file_name(name, f"telemetry.bindings.{param}")
    if request.mode is Mode.SIMULATION and bindings:
        msg = "Telemetry bindings were supplied but capture directory is missing."
        raise FlowdropError(ErrorCode.INVALID_REQUEST, msg, field="telemetry.bindings")
    if request.rng is not None and request.rng.kind.lower() != hashing.RNG_KIND:
        msg = f"Unsupported rng.kind '{request.rng.kind}'. Expected '{hashing.RNG_KIND}'."
        raise FlowdropError(ErrorCode.INVALID_REQUEST, msg, field="rng.kind")
    template = engine.load_template(find_template(request.template_id, tuple(roots.templates)))
    for param in request.parameters:
        if template.parameter(param) is None:
            msg = f"Template '{template.id}' has no parameter '{param}'."
            raise FlowdropError(ErrorCode.PARAMETER_INVALID, msg, parameter=param)
    for param in bindings:
        if template.parameter(param) is None:
            msg = f"Telemetry binding '{param}' does not name a parameter of the template."
            raise FlowdropError(ErrorCode.PARAMETER_INVALID, msg, parameter=param)
    seed = request.rng.seed if request.rng is not None else None
    parameters = {k: v for k, v in request.parameters.items() if v is not None}
    check_overrides(template, parameters)
    replay_parameters = {**parameters, **{p: f"file://telemetry/{n}" for p, n in bindings.items()}}
    telemetry_mode = request.mode is Mode.TELEMETRY
    # Generating the model validates the parameters before anything is planned or written.
    model = engine.generate_model(
        template,
        replay_parameters if telemetry_mode else parameters,
        mode=request.mode.value,
        now=now,
    )
    rng_seed = hashing.DEFAULT_RNG_SEED if seed is None else seed

    def deterministic(
        mode: Mode, params: Mapping[str, Any], hashed: Mapping[str, str]
    ) -> RunTarget:
        """The run of ``mode`` over ``params``: input hash, deterministic id, provenance."""
        input_hash = hashing.input_hash(
            template.id, template.version, mode.value, params, hashed, hashing.RNG_KIND, rng_seed
        )
        provenance = template_provenance(
            template,
            params,
            mode=mode.value,
            input_hash=input_hash,
            rng_seed=rng_seed,
            now=now,
            telemetry_bindings=bindings if mode is Mode.TELEMETRY else None,
        )
        return RunTarget(
            input_hash, hashing.deterministic_run_id(template.id, input_hash), provenance
        )

    def requested(deterministic_run: RunTarget) -> RunTarget:
        """The same run under the id the request asks for (``options.runId``, else the
        deterministic one, else None: a fresh id)."""
        if options.run_id is not None:
            return replace(deterministic_run, run_id=options.run_id)
        if options.deterministic_run_id:
            return deterministic_run
        return replace(deterministic_run, run_id=None)

    # The simulation a bundle is captured from; a simulation request's own run is the same one.
    source = deterministic(Mode.SIMULATION, parameters, {})
    capture_key = bundle_dir = None
    if telemetry_mode:
        capture_key = _capture_key(capture_directory, template)
        bundle_dir = resolve_inside(telemetry_root, capture_key, field="captureKey")
        # Which bundle is replayed is an input too: without it, a request naming another
        # bundle (telemetry.captureDirectory) would get the first bundle's replay as "reused".
        hashed = {**bindings, CAPTURE_KEY_BINDING: capture_key}
        run = requested(deterministic(Mode.TELEMETRY, replay_parameters, hashed))
    else:
        run = requested(source)
    return ValidatedRequest(
        request_id=request_id,
        request=request,
        template=template,
        model=model,
        parameters=parameters,
        replay_parameters=replay_parameters,
        bindings=bindings,
        seed=seed,
        now=now,
        runs_root=runs_root,
        telemetry_root=telemetry_root,
        store=RunStore(runs_root),
        target=run,
        source=source,
        fresh_run_id=f"run_{now:%Y%m%dT%H%M%SZ}_{uuid.uuid4().hex[:8]}",
        parameters_hash=hashing.parameters_hash(template.id, template.version, seed, parameters),
        capture_key=capture_key,
        bundle_dir=bundle_dir,
    )


def _capture_key(capture_directory: str | None, template: engine.Template) -> str:
    """``telemetry.captureDirectory``, else the template's ``metadata.captureKey``."""
    key = capture_directory or template.capture_key
    if key is None:
        msg = (
            f"Template '{template.id}' has no metadata.captureKey and the request names "
            "no bundle: set telemetry.captureDirectory to a bundle under the telemetry root, "
            "or add metadata.captureKey to the template."
        )
        raise FlowdropError(ErrorCode.CAPTURE_KEY_MISSING, msg, templateId=template.id)
    return check_id(key, "captureKey")
