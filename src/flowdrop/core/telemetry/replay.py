"""Telemetry replay: a validated bundle plus its template in, a telemetry-mode canonical run out.

FlowTime's ``TelemetryBundleBuilder`` (orchestration ref §6.2), manifest-driven as on upstream
main: each manifest file is mapped to a model series through the topology node's semantics for
its metric (or the outputs' ``as`` names), its values replace that node (a const), and the
evaluator recomputes everything downstream. Per-class files seed the class pass for that node
(upstream "class overrides"), so the replayed run's per-class series are the captured ones.
The bundle's CSVs and manifest are copied into ``model/telemetry/`` of the run.

The caller (:mod:`flowdrop.core.orchestration.autocapture`) has already validated the bundle with
:func:`flowdrop.core.telemetry.bundle.validate_bundle` and gives a staging directory to write into.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from flowdrop.core import engine
from flowdrop.core.engine.artifacts import TELEMETRY_MANIFEST
from flowdrop.core.engine.evalcache import evaluated
from flowdrop.core.errors import ErrorCode, FlowdropError
from flowdrop.core.hashing import dotnet_json
from flowdrop.core.numerics import FloatArray
from flowdrop.core.telemetry import bundlefiles
from flowdrop.core.telemetry.bindings import DEFAULT_CLASS, METRICS
from flowdrop.core.telemetry.bundle import BundleManifest
from flowdrop.core.telemetry.manifest import CaptureWarning

_FIELD_BY_METRIC = {metric: field_name for field_name, metric in METRICS.items()}


@dataclass
class ReplayPlan:
    """Which model node each manifest file overrides (totals and per class)."""

    totals: dict[str, list[float]] = field(default_factory=dict)
    classes: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    warnings: list[CaptureWarning] = field(default_factory=list)


class _Targets:
    """Which model series a manifest file feeds: the topology's nodes by id and the outputs'
    ``as`` names, looked up once per replay rather than once per file."""

    def __init__(self, model: engine.Model) -> None:
        self.nodes: dict[str, Any] = {}
        for n in model.topology.get("nodes") or []:
            self.nodes.setdefault(str(n.get("id", "")).lower(), n)  # the first one, as before
        self.by_alias = {
            str(o.get("as")).lower(): str(o.get("series")) for o in model.outputs if o.get("as")
        }

    def series_for(self, node_id: str, metric: str, file_name: str) -> str | None:
        """The model series a manifest file feeds, or ``None`` when nothing matches (skipped)."""
        node = self.nodes.get(node_id.lower())
        if node is None:
            return None
        semantics = node.get("semantics") or {}
        reference = str(semantics.get(_FIELD_BY_METRIC[metric]) or "").strip()
        by_alias = self.by_alias
        if reference:
            name = reference.replace("\\", "/").rsplit("/", 1)[-1]
            if name.lower() in by_alias:
                return by_alias[name.lower()]
            if (
                "://" not in reference
                and "/" not in reference
                and not name.lower().endswith(".csv")
            ):
                return reference
        return by_alias.get(file_name.lower())


def plan_replay(model: engine.Model, manifest: BundleManifest) -> ReplayPlan:
    """Read every manifest file (where it was validated: ``manifest.facts``) and decide which
    node it overrides."""
    plan = ReplayPlan()
    node_ids = set(model.node_ids)
    targets = _Targets(model)
    for entry in manifest.files:
        series = targets.series_for(entry.node_id, entry.metric, entry.path)
        if series is None or series not in node_ids:
            continue
        # validate_bundle checked the header and that there is one row per bin.
        known = manifest.facts[entry.path]
        values = bundlefiles.read_values(known, manifest.bins).tolist()
        if entry.class_id in ("", DEFAULT_CLASS):
            plan.totals[series] = values
        else:
            plan.classes.setdefault(series, {})[entry.class_id] = values
    plan.warnings.extend(_class_warnings(plan, manifest))
    return plan


def _class_warnings(plan: ReplayPlan, manifest: BundleManifest) -> list[CaptureWarning]:
    warnings: list[CaptureWarning] = []
    supports = bool(manifest.raw.get("supportsClassMetrics"))
    declared = [c for c in manifest.raw.get("classes") or [] if c != DEFAULT_CLASS]
    if supports and not declared:
        message = "Manifest declares class metrics but lists no classes."
        warnings.append(CaptureWarning("class_manifest_missing", message))
    if supports and not plan.classes:
        warnings.append(CaptureWarning("class_data_missing", "No class series were loaded."))
    for series, per_class in plan.classes.items():
        missing = [c for c in declared if c not in per_class]
        if missing:
            message = f"Node '{series}' has no series for class(es) {', '.join(missing)}."
            warnings.append(CaptureWarning("class_series_partial", message, series))
        total = plan.totals.get(series)
        if total is None:
            message = f"Node '{series}' has class series but no totals."
            warnings.append(CaptureWarning("class_totals_missing", message, series))
            continue
        for i, value in enumerate(total):
            parts = [v[i] for v in per_class.values()]
            if math.isnan(value) or any(math.isnan(p) for p in parts):
                continue
            summed = sum(parts)
            if abs(value - summed) > max(1e-6, abs(value) * 1e-6):
                message = (
                    f"Node '{series}' total differs from class sum "
                    f"(bin {i}, total={value:.4g}, sum={summed:.4g})."
                )
                warnings.append(
                    CaptureWarning("class_conservation_mismatch", message, series, (i,))
                )
                break
    return warnings


def apply_plan(model: engine.Model, plan: ReplayPlan) -> dict[str, dict[str, FloatArray]]:
    """Inject the captured totals into ``model`` (mutates it); return the per-class seeds."""
    for series, values in plan.totals.items():
        model.set_values(series, values)
    seeded: dict[str, dict[str, FloatArray]] = {}
    for series, per_class in plan.classes.items():
        arrays = {c: np.asarray(v, dtype=np.float64) for c, v in per_class.items()}
        if series not in plan.totals:
            model.set_values(series, np.sum(np.stack(list(arrays.values())), axis=0).tolist())
        seeded[series] = arrays
    return seeded


def replay_bundle(
    model: engine.Model,
    template: engine.Template,
    parameters: Mapping[str, Any],
    manifest: BundleManifest,
    out_dir: Path,
    *,
    run_id: str,
    input_hash: str,
    provenance: Mapping[str, Any],
    now: datetime,
) -> tuple[engine.RunInfo, list[CaptureWarning]]:
    """Write the telemetry-mode run of ``model`` (generated in telemetry mode from ``template``)
    fed by the bundle ``manifest`` validated (its files are read where validation checked them)
    into ``out_dir``; ``model`` is modified."""
    plan = plan_replay(model, manifest)
    seeded = apply_plan(model, plan)
    evaluation, run_warnings = evaluated(model, class_seeds=seeded)
    rendered = engine.render_run(
        model,
        evaluation,
        run_id=run_id,
        template=template,
        parameters=parameters,
        mode="telemetry",
        rng_seed=None,
        input_hash=input_hash,
        provenance=provenance,
        now=now,
        warnings=run_warnings,
    )
    _add_bundle(rendered, manifest, plan.warnings)
    try:
        info = engine.write_files(out_dir, rendered)
    except OSError as exc:
        msg = f"Could not write the replayed run: {exc.strerror or exc}."
        raise FlowdropError(ErrorCode.STORAGE_ERROR, msg, errno=exc.errno) from exc
    return info, plan.warnings


def _add_bundle(
    rendered: engine.RenderedRun,
    manifest: BundleManifest,
    warnings: list[CaptureWarning],
) -> None:
    """The bundle's CSVs and its manifest (with the replay's warnings) under ``model/telemetry/``;
    the merged manifest takes the place of the run's own, so it is written once."""
    try:
        for name in dict.fromkeys(f.path for f in manifest.files):
            data = bundlefiles.read_bytes(manifest.facts[name])
            rendered.files[f"model/telemetry/{name}"] = data
    except OSError as exc:
        msg = f"Could not copy the bundle into the run: {exc.strerror or exc}."
        raise FlowdropError(ErrorCode.STORAGE_ERROR, msg, errno=exc.errno) from exc
    merged = dict(manifest.raw)
    merged["warnings"] = [*manifest.warnings, *(w.to_json() for w in warnings)]
    rendered.files[TELEMETRY_MANIFEST] = dotnet_json(merged, indent=True).encode("utf-8")
