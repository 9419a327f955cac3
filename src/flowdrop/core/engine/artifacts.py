"""The canonical run directory (``RunArtifactWriter``, §10): CSVs, JSON documents, hashes.

Every byte written is a function of the model, the evaluation and the injected clock, so the same
inputs give the same CSVs (and, with the same ``now``, the same JSON documents).
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from flowdrop.core.engine.evaluation import Evaluation
from flowdrop.core.engine.graph import compile_document
from flowdrop.core.engine.invariants import analyze
from flowdrop.core.errors import ErrorCode, FlowdropError
from flowdrop.core.hashing import (
    DEFAULT_RNG_SEED,
    RNG_KIND,
    dotnet_json,
    scenario_hash,
    sha256_bytes,
)
from flowdrop.core.numerics import FloatArray, format_shortest
from flowdrop.core.templating.model import Model, iso_o
from flowdrop.core.templating.template import Template
from flowdrop.core.templating.yamltext import dump

BOM = b"\xef\xbb\xbf"
ENGINE_VERSION = "0.1.0"
UNIT = "entities/bin"
_NODE_FIELDS = (
    "arrivals", "served", "errors", "externalDemand", "queueDepth", "capacity", "attempts",
    "failures", "retryEcho",
)  # fmt: skip
_CONSTRAINT_FIELDS = ("arrivals", "served", "errors", "latencyMinutes")


@dataclass
class RunInfo:
    """What a written run is: its id, directory, warnings and series ids."""

    run_id: str
    path: Path
    warnings: list[dict[str, Any]] = field(default_factory=list)
    series_ids: list[str] = field(default_factory=list)
    model_hash: str = ""
    scenario_hash: str = ""
    input_hash: str | None = None


def series_id(node_id: str, class_id: str = "DEFAULT") -> str:
    """``<id>@<ID upper>@<class>``."""
    return f"{node_id}@{node_id.upper()}@{class_id}"


def csv_bytes(values: FloatArray) -> bytes:
    """``bin_index,value`` CSV, UTF-8 with BOM, LF line endings."""
    rows = "".join(f"{t},{format_shortest(v)}\n" for t, v in enumerate(values.tolist()))
    return BOM + ("bin_index,value\n" + rows).encode("utf-8")


def _json_bytes(value: Any) -> bytes:
    return BOM + dotnet_json(value, indent=True).encode("utf-8")


def _normalize_spec(
    document: dict[str, Any], compiled: dict[str, Any], context: Mapping[str, FloatArray]
) -> tuple[dict[str, Any], list[str]]:
    """Rewrite topology semantics to ``file:../series/<id>.csv`` (§10.3)."""
    spec = copy.deepcopy(document)
    referenced: list[str] = []
    topology = spec.get("topology") or {}
    compiled_nodes = {
        str(n.get("id")): n.get("semantics") or {}
        for n in (compiled.get("topology") or {}).get("nodes") or []
    }

    def rewrite(owner: str, semantics: dict[str, Any], fields: tuple[str, ...]) -> None:
        for key in fields:
            value = semantics.get(key)
            if not isinstance(value, str) or not value.strip() or value.startswith("file:"):
                continue
            if "://" in value:
                raise FlowdropError(
                    ErrorCode.TEMPLATE_INVALID,
                    f"Topology node '{owner}' semantics.{key} must use file: URIs",
                    nodeId=owner,
                )
            if value not in context:
                value = str(compiled_nodes.get(owner, {}).get(key) or value)
            if value not in context:
                raise FlowdropError(
                    ErrorCode.TEMPLATE_INVALID,
                    f"Topology node '{owner}' semantics references unknown series '{value}'.",
                    nodeId=owner,
                    value=value,
                )
            semantics[key] = f"file:../series/{series_id(value)}.csv"
            referenced.append(value)

    for tnode in topology.get("nodes") or []:
        rewrite(str(tnode.get("id")), tnode.get("semantics") or {}, _NODE_FIELDS)
    for constraint in topology.get("constraints") or []:
        rewrite(str(constraint.get("id")), constraint.get("semantics") or {}, _CONSTRAINT_FIELDS)
    return spec, referenced


def resolve_series(outputs: list[dict[str, Any]], context: Mapping[str, FloatArray]) -> list[str]:
    """Output selection (§10.6 step 1)."""
    chosen: list[str] = []
    for output in outputs:
        pattern = str(output.get("series") or "")
        if pattern == "*":
            matches = list(context)
        elif pattern.endswith("/*"):
            prefix = pattern[:-1].lower()
            matches = [k for k in context if k.lower().startswith(prefix)]
        else:
            matches = [pattern] if pattern in context else []
        chosen.extend(m for m in matches if m not in chosen)
    return chosen or list(context)


def class_coverage(declared: list[str], captured: set[str]) -> str:
    """``missing`` | ``full`` | ``partial``."""
    if not declared or not captured:
        return "missing"
    return "full" if captured == set(declared) else "partial"


def template_provenance(
    template: Template,
    parameters: Mapping[str, Any],
    *,
    mode: str,
    input_hash: str | None,
    rng_seed: int | None,
    now: datetime,
    telemetry_bindings: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The orchestration ``ProvenanceMetadata`` written to ``model/provenance.json``."""
    ordered = {k: parameters[k] for k in sorted(parameters)}
    digest = hashlib.sha256(f"{template.id}:{dotnet_json(ordered)}".encode()).hexdigest()[:8]
    utc = now.astimezone(UTC)
    return {
        "source": "flowtime-sim",
        "modelId": f"model_{utc.strftime('%Y%m%dT%H%M%SZ')}_{digest}",
        "templateId": template.id,
        "templateVersion": template.version,
        "templateTitle": template.title,
        "mode": mode,
        "parameters": dict(parameters),
        "inputHash": input_hash,
        "rng": {"kind": RNG_KIND, "seed": DEFAULT_RNG_SEED if rng_seed is None else rng_seed},
        "telemetryBindings": dict(telemetry_bindings or {}),
        "generatedAt": utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z",
        "generator": "flowtime-sim/0.5.0",
        "schemaVersion": "1",
    }


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
    """Write the canonical run directory of spec §10 into ``out_dir``."""
    if not model.generated_at_pinned:
        model.document.setdefault("provenance", {})["generatedAt"] = iso_o(now)
    context = evaluation.series
    compiled = compile_document(model.document)
    spec_doc, referenced = _normalize_spec(model.document, compiled, context)
    spec_text = dump(spec_doc)
    spec_bytes = BOM + spec_text.encode("utf-8")
    model_hash = sha256_bytes(spec_bytes)
    scen_hash = scenario_hash(spec_text, rng_seed)
    created = iso_o(now)
    grid = model.grid
    declared = [str(c.get("id")) for c in model.classes]

    (out_dir / "model").mkdir(parents=True, exist_ok=True)
    (out_dir / "series").mkdir(exist_ok=True)
    (out_dir / "aggregates").mkdir(exist_ok=True)
    (out_dir / "spec.yaml").write_bytes(spec_bytes)
    (out_dir / "model" / "model.yaml").write_bytes(spec_bytes)

    selected = resolve_series(model.outputs, context)
    selected.extend(r for r in dict.fromkeys(referenced) if r not in selected)
    entries: list[dict[str, Any]] = []
    hashes: dict[str, str] = {}
    captured: set[str] = set()

    def emit(sid: str, values: FloatArray, kind: str, component: str, cls: str) -> None:
        data = csv_bytes(values)
        (out_dir / "series" / f"{sid}.csv").write_bytes(data)
        digest = sha256_bytes(data)
        hashes[sid] = digest
        entries.append(
            {
                "id": sid,
                "kind": kind,
                "path": f"series/{sid}.csv",
                "unit": UNIT,
                "componentId": component,
                "class": cls,
                "classKind": "fallback" if cls == "DEFAULT" else "specific",
                "points": int(values.shape[0]),
                "hash": digest,
            }
        )

    for node_id in selected:
        emit(series_id(node_id), context[node_id], "flow", node_id.upper(), "DEFAULT")
        for cls, values in evaluation.classes.get(node_id, {}).items():
            if np.isfinite(values).any():
                captured.add(cls)
                emit(series_id(node_id, cls), values, "flow", node_id.upper(), cls)
    for key, values in evaluation.edges.items():
        emit(series_id(key), values, "edge", key.upper(), "DEFAULT")

    coverage = class_coverage(declared, captured)
    classes_json = [
        {
            "id": str(c.get("id")),
            "displayName": c.get("displayName"),
            "description": c.get("description"),
        }
        for c in model.classes
    ]
    warnings = analyze(compiled.get("topology") or {}, evaluation)
    provenance_doc = dict(provenance) if provenance is not None else None
    if provenance_doc is None and template is not None:
        provenance_doc = template_provenance(
            template, parameters, mode=mode, input_hash=input_hash, rng_seed=rng_seed, now=now
        )

    metadata = _metadata(model, template, mode, model_hash, provenance_doc, spec_doc, created)
    (out_dir / "model" / "metadata.json").write_bytes(_json_bytes(metadata))
    if provenance_doc is not None:
        (out_dir / "model" / "provenance.json").write_bytes(_json_bytes(provenance_doc))
    if template is not None:
        _telemetry_manifest(out_dir, model, warnings, run_id, scen_hash, model_hash, created)

    run_json = {
        "schemaVersion": 1,
        "runId": run_id,
        "engineVersion": ENGINE_VERSION,
        "source": "engine",
        "inputHash": input_hash,
        "grid": {
            "bins": grid.bins,
            "binSize": grid.bin_size,
            "binUnit": grid.bin_unit.lower(),
            "timezone": "UTC",
            "align": "left",
        },
        "modelHash": model_hash,
        "scenarioHash": scen_hash,
        "createdUtc": created,
        "classCoverage": coverage,
        "warnings": warnings,
        "series": [{"id": e["id"], "path": e["path"], "unit": UNIT} for e in entries],
        "classes": classes_json,
    }
    manifest: dict[str, Any] = {
        "schemaVersion": 1,
        "scenarioHash": scen_hash,
        "rng": {"kind": RNG_KIND, "seed": DEFAULT_RNG_SEED if rng_seed is None else rng_seed},
        "seriesHashes": hashes,
        "eventCount": 0,
        "createdUtc": created,
        "modelHash": model_hash,
    }
    if provenance_doc is not None:
        block: dict[str, Any] = {
            "hasProvenance": True,
            "modelId": provenance_doc.get("modelId"),
            "templateId": provenance_doc.get("templateId"),
        }
        if input_hash is not None:
            block["inputHash"] = input_hash
        manifest["provenance"] = block
    manifest["classes"] = classes_json
    index = {
        "schemaVersion": 1,
        "grid": {
            "bins": grid.bins,
            "binSize": grid.bin_size,
            "binUnit": grid.bin_unit.lower(),
            "timezone": "UTC",
        },
        "series": entries,
        "formats": {
            "aggregatesTable": {
                "path": "aggregates/node_time_bin.parquet",
                "dimensions": ["time_bin", "component_id", "class"],
                "measures": ["arrivals", "served", "errors"],
            }
        },
        "classes": classes_json,
        "classCoverage": coverage,
    }
    (out_dir / "series" / "index.json").write_bytes(_json_bytes(index))
    (out_dir / "manifest.json").write_bytes(_json_bytes(manifest))
    (out_dir / "run.json").write_bytes(_json_bytes(run_json))
    return RunInfo(
        run_id=run_id,
        path=out_dir,
        warnings=warnings,
        series_ids=[e["id"] for e in entries],
        model_hash=model_hash,
        scenario_hash=scen_hash,
        input_hash=input_hash,
    )


def _metadata(
    model: Model,
    template: Template | None,
    mode: str,
    model_hash: str,
    provenance: Mapping[str, Any] | None,
    spec: Mapping[str, Any],
    received: str,
) -> dict[str, Any]:
    prov = provenance or {}
    sources: list[str] = []
    for tnode in (spec.get("topology") or {}).get("nodes") or []:
        for value in (tnode.get("semantics") or {}).values():
            if isinstance(value, str) and value.startswith("file:") and value not in sources:
                sources.append(value)
    template_id = str(prov.get("templateId") or model.template_id)
    return {
        "schemaVersion": int(model.document.get("schemaVersion") or 1),
        "templateId": template_id,
        "templateTitle": str(prov.get("templateTitle") or model.template_title or template_id),
        "templateNarrative": model.template_narrative,
        "templateVersion": str(prov.get("templateVersion") or model.template_version),
        "mode": str(prov.get("mode") or mode).lower(),
        "modelHash": model_hash,
        "source": prov.get("source"),
        "generator": prov.get("generator"),
        "modelId": prov.get("modelId"),
        "generatedAtUtc": prov.get("generatedAtUtc") or prov.get("generatedAt"),
        "receivedAtUtc": received,
        "parameters": dict(prov.get("parameters") or {}),
        "hasTelemetrySources": bool(sources),
        "telemetrySources": sources,
        "nodeSources": {},
    }


def _telemetry_manifest(
    out_dir: Path,
    model: Model,
    warnings: list[dict[str, Any]],
    run_id: str,
    scen_hash: str,
    model_hash: str,
    captured_at: str,
) -> None:
    grid = model.grid
    document = {
        "schemaVersion": 1,
        "window": {"startTimeUtc": grid.start, "durationMinutes": grid.bins * grid.bin_size},
        "grid": {"bins": grid.bins, "binSize": grid.bin_size, "binUnit": grid.bin_unit},
        "files": [],
        "warnings": [
            {k: w.get(k) for k in ("code", "message", "nodeId", "bins", "severity")}
            for w in warnings
        ],
        "provenance": {
            "runId": run_id,
            "scenarioHash": scen_hash,
            "modelHash": model_hash,
            "capturedAtUtc": captured_at,
        },
        "supportsClassMetrics": False,
    }
    folder = out_dir / "model" / "telemetry"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "telemetry-manifest.json").write_text(
        dotnet_json(document, indent=True), encoding="utf-8"
    )
