"""The JSON and YAML documents of a canonical run directory (§10), as pure functions.

:mod:`flowdrop.core.engine.artifacts` renders a run from these and writes it; nothing here
touches the filesystem.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from flowdrop.core.engine.graph import own_semantics
from flowdrop.core.errors import ErrorCode, FlowdropError
from flowdrop.core.hashing import DEFAULT_RNG_SEED, RNG_KIND, dotnet_json
from flowdrop.core.numerics import FloatArray
from flowdrop.core.templating.model import Model
from flowdrop.core.templating.template import Template

_NODE_FIELDS = (
    "arrivals", "served", "errors", "externalDemand", "queueDepth", "capacity", "attempts",
    "failures", "retryEcho",
)  # fmt: skip
_CONSTRAINT_FIELDS = ("arrivals", "served", "errors", "latencyMinutes")


def series_id(node_id: str, class_id: str = "DEFAULT") -> str:
    """``<id>@<ID upper>@<class>``."""
    return f"{node_id}@{node_id.upper()}@{class_id}"


def normalize_spec(
    document: dict[str, Any], compiled_topology: dict[str, Any], context: Mapping[str, FloatArray]
) -> tuple[dict[str, Any], list[str]]:
    """Rewrite topology semantics to ``file:../series/<id>.csv`` (§10.3).

    ``compiled_topology`` is the topology after engine-side synthesis (the graph's).
    """
    # Only topology semantics are rewritten: the rest of the spec (nodes and their values)
    # is shared with ``document`` and only read.
    spec = dict(document)
    if "topology" in spec:
        spec["topology"] = own_semantics(spec["topology"])
    referenced: list[str] = []
    topology = spec.get("topology") or {}
    compiled_nodes = {
        str(n.get("id")): n.get("semantics") or {} for n in compiled_topology.get("nodes") or []
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


def metadata_document(
    model: Model,
    template: Template | None,
    mode: str,
    model_hash: str,
    provenance: Mapping[str, Any] | None,
    spec: Mapping[str, Any],
    received: str,
) -> dict[str, Any]:
    """``model/metadata.json``."""
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


def telemetry_manifest_document(
    model: Model,
    warnings: list[dict[str, Any]],
    run_id: str,
    scen_hash: str,
    model_hash: str,
    captured_at: str,
) -> dict[str, Any]:
    """``model/telemetry/telemetry-manifest.json`` of a template run (replay replaces it)."""
    grid = model.grid
    return {
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


def telemetry_manifest_bytes(document: Mapping[str, Any]) -> bytes:
    """The telemetry manifest as written: .NET-style JSON, UTF-8, no BOM."""
    return dotnet_json(document, indent=True).encode("utf-8")
