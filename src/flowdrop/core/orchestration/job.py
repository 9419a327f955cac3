"""One request under orchestration: its validated inputs and the names derived from them.

:class:`Job` checks a :class:`~flowdrop.core.contract.RunRequest` against the sandbox rules and
its template (names, bindings, rng kind, parameters, the generated model) before anything is
planned or written, and derives what every branch of the orchestration needs: input hashes,
target / source / fresh run ids, provenance, the stochastic-template rule, phase timings and the
bound lifecycle logger.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import structlog

from flowdrop.core import engine, hashing
from flowdrop.core.contract import Mode, Phase, RunRequest
from flowdrop.core.engine.artifacts import template_provenance
from flowdrop.core.errors import ErrorCode, FlowdropError
from flowdrop.core.fs.sandbox import check_file_name, check_id, check_root
from flowdrop.core.orchestration.overrides import check_overrides
from flowdrop.core.orchestration.roots import Roots, RunStore, find_template

ProgressCallback = Callable[[Phase, str], None]
DEFAULT_SEED = 123
RNG_KIND = "pcg32"

log = structlog.get_logger()


class Job:
    """One request's orchestration state: resolved inputs, roots, progress, clock and timings."""

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
    def timed(self, name: str) -> Iterator[None]:
        """Add the time spent in the block to ``timings[name]``."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - started

    def validate(self) -> None:
        """Check the request and load its template and model; raises :class:`FlowdropError`."""
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
        check_overrides(self.template, self.parameters)
        self.replay_params = dict(self.parameters)
        self.replay_params.update({p: f"file://telemetry/{n}" for p, n in self.bindings.items()})
        # Generating the model validates the parameters before anything is planned or written.
        self.model = engine.generate_model(
            self.template,
            self.replay_params if request.mode is Mode.TELEMETRY else self.parameters,
            mode=request.mode.value,
            now=self.clock(),
        )

    @property
    def rng_seed(self) -> int:
        """The seed a run records: the request's, else FlowTime's default."""
        return DEFAULT_SEED if self.seed is None else self.seed

    def input_hash(
        self, mode: Mode, parameters: Mapping[str, Any], bindings: Mapping[str, str]
    ) -> str:
        return hashing.input_hash(
            self.template.id,
            self.template.version,
            mode.value,
            parameters,
            bindings,
            RNG_KIND,
            self.rng_seed,
        )

    def target_run_id(self, input_hash: str) -> str | None:
        """``options.runId``, else the deterministic id, else ``None`` (a fresh id later)."""
        if self.options.run_id is not None:
            return self.options.run_id
        if self.options.deterministic_run_id:
            return hashing.deterministic_run_id(self.template.id, input_hash)
        return None

    def source_run_id(self) -> str:
        """The deterministic simulation run a bundle is captured from (reused when present)."""
        sim_hash = self.input_hash(Mode.SIMULATION, self.parameters, {})
        return hashing.deterministic_run_id(self.template.id, sim_hash)

    def fresh_run_id(self) -> str:
        return f"run_{self.clock():%Y%m%dT%H%M%SZ}_{uuid.uuid4().hex[:8]}"

    def provenance(
        self, mode: Mode, parameters: Mapping[str, Any], input_hash: str
    ) -> dict[str, Any]:
        return template_provenance(
            self.template,
            parameters,
            mode=mode.value,
            input_hash=input_hash,
            rng_seed=self.rng_seed,
            now=self.clock(),
            telemetry_bindings=self.bindings if mode is Mode.TELEMETRY else None,
        )

    def parameters_hash(self) -> str:
        """The hash of template, seed and request parameters that ``bundle.json`` records."""
        return hashing.parameters_hash(
            self.template.id, self.template.version, self.seed, self.parameters
        )

    def require_seed(self, what: str) -> None:
        """``stochastic_template`` unless the template is deterministic or the seed is pinned."""
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
