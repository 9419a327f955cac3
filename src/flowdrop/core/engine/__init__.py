"""The engine's public facade: templates in, canonical runs out.

Everything other packages need from the FlowTime engine is importable from here; the
implementation lives in one module per concept (template, model, evaluation, artifacts, ...).
``load_template`` and ``generate_model`` go through the process-wide caches
(:mod:`~flowdrop.core.templating.templatecache`, :mod:`~flowdrop.core.engine.compilecache`): a
template file is parsed once per identity and a model generated once per inputs.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flowdrop.core.engine.artifacts import (
    RenderedRun,
    RunInfo,
    render_run,
    series_id,
    template_provenance,
    write_files,
    write_run,
)
from flowdrop.core.engine.compilecache import cached_model as generate_model
from flowdrop.core.engine.evaluation import Evaluation, evaluate
from flowdrop.core.engine.runreader import RunData, read_run
from flowdrop.core.hashing import DEFAULT_RNG_SEED, RNG_KIND, deterministic_run_id, input_hash
from flowdrop.core.templating.model import Grid, Model
from flowdrop.core.templating.template import ParameterSpec, Template, find_template
from flowdrop.core.templating.templatecache import load_template

__all__ = [
    "Evaluation",
    "Grid",
    "Model",
    "ParameterSpec",
    "RenderedRun",
    "RunData",
    "RunInfo",
    "Template",
    "evaluate",
    "find_template",
    "generate_model",
    "load_template",
    "read_run",
    "render_run",
    "series_id",
    "simulate",
    "validate_template",
    "write_files",
    "write_run",
]


def validate_template(template: Template, parameters: Mapping[str, Any] | None = None) -> Model:
    """Generate the model at defaults (or ``parameters``) and build its graph; raise if invalid."""
    from flowdrop.core.engine.graph import build_graph

    model = generate_model(template, parameters or {}, mode=template.mode)
    build_graph(model)
    return model


def simulate(
    template: Template,
    parameters: Mapping[str, Any],
    out_dir: Path,
    *,
    rng_seed: int | None = None,
    run_id: str | None = None,
    now: datetime | None = None,
) -> RunInfo:
    """Generate, evaluate and write a simulation run into ``out_dir``.

    Without ``run_id`` the id is the deterministic one (template id + input hash), so the same
    template, parameters and seed always give the same id.
    """
    moment = now or datetime.now(UTC)
    seed = DEFAULT_RNG_SEED if rng_seed is None else rng_seed
    hash_value = input_hash(
        template.id, template.version, "simulation", parameters, {}, RNG_KIND, seed
    )
    model = generate_model(template, parameters, mode="simulation", now=moment)
    evaluation = evaluate(model)
    provenance = template_provenance(
        template, parameters, mode="simulation", input_hash=hash_value, rng_seed=seed, now=moment
    )
    return write_run(
        model,
        evaluation,
        out_dir,
        run_id=run_id or deterministic_run_id(template.id, hash_value),
        template=template,
        parameters=parameters,
        mode="simulation",
        rng_seed=seed,
        input_hash=hash_value,
        provenance=provenance,
        now=moment,
    )
