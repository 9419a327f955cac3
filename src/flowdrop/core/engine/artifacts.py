"""The canonical run directory (``RunArtifactWriter``, §10): a pure render, then one writer.

:func:`render_run` turns a model, its evaluation and the injected clock into the bytes of every
file (CSVs, JSON documents, hashes) without touching the filesystem or the model; the same inputs
give the same bytes. :func:`write_files` writes a rendered run into a (staging) directory, and
:func:`write_run` is the two in one. The documents themselves are built in
:mod:`flowdrop.core.engine.rundocs`.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from flowdrop.core.engine import seriesbytes
from flowdrop.core.engine.evaluation import Evaluation
from flowdrop.core.engine.graph import compile_document
from flowdrop.core.engine.rundocs import (
    class_coverage,
    metadata_document,
    normalize_spec,
    resolve_series,
    series_id,
    telemetry_manifest_bytes,
    telemetry_manifest_document,
    template_provenance,
)
from flowdrop.core.engine.runwarnings import run_warnings
from flowdrop.core.engine.seriesbytes import BOM, csv_bytes
from flowdrop.core.engine.seriesplan import DEFAULT_CLASS, plan_series
from flowdrop.core.engine.warningtypes import Warning
from flowdrop.core.hashing import (
    DEFAULT_RNG_SEED,
    RNG_KIND,
    dotnet_json,
    scenario_hash,
    sha256_bytes,
)
from flowdrop.core.templating.model import Model, iso_o
from flowdrop.core.templating.template import Template
from flowdrop.core.templating.yamltext import dump

__all__ = [
    "RenderedRun",
    "RunInfo",
    "csv_bytes",
    "render_run",
    "resolve_series",
    "series_id",
    "template_provenance",
    "write_files",
    "write_run",
]

ENGINE_VERSION = "0.1.0"
UNIT = "entities/bin"
TELEMETRY_MANIFEST = "model/telemetry/telemetry-manifest.json"
RUN_DIRECTORIES = ("model", "series", "aggregates")


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


@dataclass
class RenderedRun:
    """Every file of a run directory (relative path -> bytes, in writing order) and its facts."""

    files: dict[str, bytes]
    info: RunInfo


def _json_bytes(value: Any) -> bytes:
    return BOM + dotnet_json(value, indent=True).encode("utf-8")


def render_run(
    model: Model,
    evaluation: Evaluation,
    *,
    run_id: str,
    template: Template | None,
    parameters: Mapping[str, Any],
    mode: str,
    rng_seed: int | None,
    input_hash: str | None,
    provenance: Mapping[str, Any] | None,
    now: datetime,
    warnings: list[Warning] | None = None,
) -> RenderedRun:
    """The canonical run directory of spec §10, as bytes; neither ``model`` nor disk is touched.

    ``warnings`` are ``run_warnings(evaluation)`` when the caller has them already.
    """
    document = model.document
    if not model.generated_at_pinned:
        stamped = {**(document.get("provenance") or {}), "generatedAt": iso_o(now)}
        document = {**document, "provenance": stamped}
    context = evaluation.series
    # The evaluation's graph was built from the compiled document: no second compile.
    graph = evaluation.graph
    topology = graph.topology if graph is not None else compile_document(document).get("topology")
    spec_doc, referenced = normalize_spec(document, topology or {}, context)
    spec_text = dump(spec_doc)
    spec_bytes = BOM + spec_text.encode("utf-8")
    model_hash = sha256_bytes(spec_bytes)
    scen_hash = scenario_hash(spec_text, rng_seed)
    created = iso_o(now)
    grid = model.grid
    declared = [str(c.get("id")) for c in model.classes]
    files: dict[str, bytes] = {"spec.yaml": spec_bytes, "model/model.yaml": spec_bytes}

    selected = resolve_series(model.outputs, context)
    selected.extend(r for r in dict.fromkeys(referenced) if r not in selected)
    entries: list[dict[str, Any]] = []
    hashes: dict[str, str] = {}
    captured: set[str] = set()
    # About half the series of a run repeat another one (zeros, pass-through classes), and
    # runs repeat each other's: each distinct array is formatted and hashed once (seriesbytes).
    for planned in plan_series(selected, context, evaluation.classes, evaluation.edge_list):
        sid, cls = planned.series_id, planned.class_id
        data, digest = seriesbytes.rendered(planned.values)
        files[f"series/{sid}.csv"] = data
        hashes[sid] = digest
        if planned.kind == "flow" and cls != DEFAULT_CLASS:
            captured.add(cls)
        entries.append(
            {
                "id": sid,
                "kind": planned.kind,
                "path": f"series/{sid}.csv",
                "unit": UNIT,
                "componentId": planned.component,
                "class": cls,
                "classKind": "fallback" if cls == DEFAULT_CLASS else "specific",
                "points": int(planned.values.shape[0]),
                "hash": digest,
            }
        )

    coverage = class_coverage(declared, captured)
    classes_json = [
        {
            "id": str(c.get("id")),
            "displayName": c.get("displayName"),
            "description": c.get("description"),
        }
        for c in model.classes
    ]
    if warnings is None:
        warnings = run_warnings(evaluation)
    provenance_doc = dict(provenance) if provenance is not None else None
    if provenance_doc is None and template is not None:
        provenance_doc = template_provenance(
            template, parameters, mode=mode, input_hash=input_hash, rng_seed=rng_seed, now=now
        )

    metadata = metadata_document(
        model, template, mode, model_hash, provenance_doc, spec_doc, created
    )
    files["model/metadata.json"] = _json_bytes(metadata)
    if provenance_doc is not None:
        files["model/provenance.json"] = _json_bytes(provenance_doc)
    if template is not None:
        manifest_doc = telemetry_manifest_document(
            model, warnings, run_id, scen_hash, model_hash, created
        )
        files[TELEMETRY_MANIFEST] = telemetry_manifest_bytes(manifest_doc)

    grid_json = {"bins": grid.bins, "binSize": grid.bin_size, "binUnit": grid.bin_unit.lower()}
    run_json = {
        "schemaVersion": 1,
        "runId": run_id,
        "engineVersion": ENGINE_VERSION,
        "source": "engine",
        "inputHash": input_hash,
        "grid": {**grid_json, "timezone": "UTC", "align": "left"},
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
        "grid": {**grid_json, "timezone": "UTC"},
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
    files["series/index.json"] = _json_bytes(index)
    files["manifest.json"] = _json_bytes(manifest)
    files["run.json"] = _json_bytes(run_json)
    info = RunInfo(
        run_id=run_id,
        path=Path(),
        warnings=warnings,
        series_ids=[e["id"] for e in entries],
        model_hash=model_hash,
        scenario_hash=scen_hash,
        input_hash=input_hash,
    )
    return RenderedRun(files, info)


def write_files(out_dir: Path, rendered: RenderedRun) -> RunInfo:
    """Write a rendered run into ``out_dir`` (a staging directory; durability is the publisher's).

    A file whose bytes were already written is a hard link to the first one: about half the
    series of a run repeat another, and creating an inode costs ~50x a link on ext4 (0.15-0.6 ms
    each here). Where links are refused (filesystem, link count) the bytes are written again.
    Links are made only in an empty directory; over an old run (the CLI's ``--out``) a linked
    file is unlinked before it is written, so new bytes never land in its twin too.
    """
    link = _empty(out_dir)
    for name in RUN_DIRECTORIES:
        (out_dir / name).mkdir(parents=True, exist_ok=True)
    made: set[str] = set()
    written: dict[bytes, str] = {}
    for relative, data in rendered.files.items():
        target = os.path.join(out_dir, relative)
        parent = os.path.dirname(target)
        if parent not in made:
            os.makedirs(parent, exist_ok=True)
            made.add(parent)
        first = written.get(data)
        if first is not None:
            try:
                os.link(first, target)
                continue
            except OSError:
                link = False  # not here: write every file
                written.clear()
        if link:
            written.setdefault(data, target)
        else:
            _unlink_if_linked(target)
        _write_new(target, data)
    rendered.info.path = out_dir
    return rendered.info


def _write_new(path: str, data: bytes) -> None:
    """``Path.write_bytes`` (same flags and mode) without the file object: a third of the cost."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def _unlink_if_linked(path: str) -> None:
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISREG(info.st_mode) and info.st_nlink > 1:
        os.unlink(path)


def _empty(directory: Path) -> bool:
    try:
        with os.scandir(directory) as entries:
            return next(entries, None) is None
    except FileNotFoundError:
        return True


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
    """Render the canonical run directory of spec §10 and write it into ``out_dir``."""
    rendered = render_run(
        model,
        evaluation,
        run_id=run_id,
        template=template,
        parameters=parameters,
        mode=mode,
        rng_seed=rng_seed,
        input_hash=input_hash,
        provenance=provenance,
        now=now,
    )
    return write_files(out_dir, rendered)
