"""The engine's public facade: templates in, canonical runs out.

Everything other packages need from the FlowTime engine is importable from here; the
implementation lives in one module per concept (template, model, evaluation, artifacts, ...).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

__all__ = [
    "Evaluation",
    "Model",
    "RunData",
    "RunInfo",
    "Template",
    "evaluate",
    "find_template",
    "generate_model",
    "load_template",
    "read_run",
    "simulate",
    "write_run",
]


class Template:  # placeholder until template.py lands
    pass


class Model:
    pass


class Evaluation:
    pass


class RunInfo:
    pass


class RunData:
    pass


def load_template(source: Path | str) -> Template:
    """Read a template from a file (Path) or YAML text (str)."""
    raise NotImplementedError


def find_template(template_id: str, directories: Sequence[Path]) -> Path:
    """Find the template file whose metadata.id (fallback: file stem) equals ``template_id``."""
    raise NotImplementedError


def generate_model(
    template: Template, parameters: Mapping[str, Any], *, mode: str = "simulation"
) -> Model:
    """Substitute parameters, validate and synthesise the unified model."""
    raise NotImplementedError


def evaluate(model: Model) -> Evaluation:
    """Evaluate every series of the model."""
    raise NotImplementedError


def write_run(
    model: Model,
    evaluation: Evaluation,
    out_dir: Path,
    *,
    run_id: str,
    template: Template | None,
    parameters: Mapping[str, Any],
    mode: str,
    rng_seed: int | None,
    input_hash: str | None,
    provenance: Mapping[str, Any] | None,
    now: datetime,
) -> RunInfo:
    """Write the canonical run directory into ``out_dir``."""
    raise NotImplementedError


def read_run(run_dir: Path) -> RunData:
    """Read a canonical run directory."""
    raise NotImplementedError


def simulate(
    template: Template,
    parameters: Mapping[str, Any],
    out_dir: Path,
    *,
    rng_seed: int | None = None,
    run_id: str | None = None,
    now: datetime | None = None,
) -> RunInfo:
    """generate_model + evaluate + write_run."""
    raise NotImplementedError
