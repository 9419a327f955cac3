"""Telemetry bundles on disk: ``bundle.json``, validation before replay, publication by rename.

Layout of ``TelemetryRoot/<captureKey>/`` (see docs/telemetry-capture-guide.md)::

    manifest.json      capture manifest, schema v2 (flowdrop.core.telemetry.capture)
    bundle.json        provenance of an auto-captured bundle (this module)
    <file>.csv         one per manifest entry, ``bin_index,classId,value``

A bundle is built in a hidden staging directory beside its final name and made visible with one
``rename`` (:func:`build_bundle`), so a reader sees no bundle or a whole one. Before a replay
:func:`validate_bundle` checks the manifest, every file's presence, SHA-256, row count and the
grid against the template's; every problem is ``bundle_invalid`` naming what is wrong. A file
that passed is not hashed again while its identity is unchanged (:mod:`.trust`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from flowdrop import __version__
from flowdrop.core.errors import ErrorCode, FlowdropError
from flowdrop.core.fs.sandbox import check_file_name
from flowdrop.core.fs.storage import (
    TEMP_PREFIX,
    AlreadyPublished,
    PendingRenames,
    StagingError,
    publish_staged,
    remove_tree,
)
from flowdrop.core.hashing import dotnet_json, sha256_file
from flowdrop.core.telemetry import trust
from flowdrop.core.telemetry.bindings import DEFAULT_CLASS, METRICS
from flowdrop.core.telemetry.bundledocs import bundle_file, load_json
from flowdrop.core.telemetry.seriescsv import CSV_HEADER

T = TypeVar("T")
MANIFEST_JSON = "manifest.json"
BUNDLE_JSON = "bundle.json"
BUNDLE_SCHEMA_VERSION = 1
GENERATOR = f"flowdrop/{__version__}"
_METRIC_NAMES = frozenset(METRICS.values())


def _invalid(key: str, message: str, **details: Any) -> FlowdropError:
    return FlowdropError(
        ErrorCode.BUNDLE_INVALID,
        f"Telemetry bundle '{key}' is invalid: {message}",
        captureKey=key,
        **details,
    )


# --- bundle.json -----------------------------------------------------------------------------


@dataclass(frozen=True)
class BundleInfo:
    """``bundle.json``: who made this bundle, from what, and when."""

    created_at_utc: str
    source_run_id: str
    template_id: str
    template_version: str
    capture_key: str
    parameters_hash: str
    rng_seed: int | None
    scenario_hash: str | None = None
    generator: str = GENERATOR
    schema_version: int = BUNDLE_SCHEMA_VERSION

    def to_json(self) -> dict[str, Any]:
        return {
            "schemaVersion": self.schema_version,
            "createdAtUtc": self.created_at_utc,
            "sourceRunId": self.source_run_id,
            "templateId": self.template_id,
            "templateVersion": self.template_version,
            "captureKey": self.capture_key,
            "parametersHash": self.parameters_hash,
            "rngSeed": self.rng_seed,
            "scenarioHash": self.scenario_hash,
            "generator": self.generator,
        }

    def to_bytes(self) -> bytes:
        return (dotnet_json(self.to_json(), indent=True) + "\n").encode("utf-8")


def write_bundle_json(bundle_dir: Path, info: BundleInfo) -> None:
    """Write ``bundle.json`` into a (staging) bundle directory."""
    try:
        (bundle_dir / BUNDLE_JSON).write_bytes(info.to_bytes())
    except OSError as exc:
        msg = f"Could not write bundle.json: {exc.strerror or exc}."
        raise FlowdropError(ErrorCode.STORAGE_ERROR, msg, errno=exc.errno) from exc


def read_bundle_json(bundle_dir: Path, key: str) -> BundleInfo | None:
    """The bundle's ``bundle.json``, or ``None`` for a hand-made bundle that has none."""
    # Never follow a symlink out of the bundle (bundle_file raises path_violation).
    path, info = bundle_file(bundle_dir, BUNDLE_JSON, field=BUNDLE_JSON)
    if info is None:
        return None
    try:
        raw = load_json(path, info, "utf-8")
        seed = raw.get("rngSeed")
        return BundleInfo(
            created_at_utc=str(raw["createdAtUtc"]),
            source_run_id=str(raw["sourceRunId"]),
            template_id=str(raw["templateId"]),
            template_version=str(raw["templateVersion"]),
            capture_key=str(raw["captureKey"]),
            parameters_hash=str(raw["parametersHash"]),
            rng_seed=None if seed is None else int(seed),
            scenario_hash=raw.get("scenarioHash"),
            generator=str(raw.get("generator") or ""),
            schema_version=int(raw.get("schemaVersion") or 0),
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise _invalid(key, f"bundle.json is malformed ({exc}).", file=BUNDLE_JSON) from None


# --- validation ------------------------------------------------------------------------------


@dataclass(frozen=True)
class BundleFile:
    node_id: str
    metric: str
    path: str
    hash: str
    points: int
    class_id: str


@dataclass(frozen=True)
class BundleManifest:
    bins: int
    bin_size: int
    bin_unit: str
    files: tuple[BundleFile, ...]
    raw: dict[str, Any]
    # The trust fact each file passed validation with, by path (what .bundlefiles reads under).
    facts: dict[str, trust.Fact]

    @property
    def warnings(self) -> list[dict[str, Any]]:
        return [w for w in self.raw.get("warnings") or [] if isinstance(w, dict)]


@dataclass(frozen=True)
class ExpectedGrid:
    bins: int
    bin_size: int
    bin_unit: str


def bundle_exists(bundle_dir: Path) -> bool:
    """A bundle exists when its directory holds a ``manifest.json`` (FlowTime's test)."""
    return (bundle_dir / MANIFEST_JSON).is_file()


def _manifest(bundle_dir: Path, real_root: Path, key: str) -> dict[str, Any]:
    path, info = bundle_file(bundle_dir, MANIFEST_JSON, field=MANIFEST_JSON, real_root=real_root)
    if info is None:
        raise _invalid(key, "manifest.json is missing.", file=MANIFEST_JSON)
    try:
        raw = load_json(path, info, "utf-8-sig")
    except (OSError, ValueError) as exc:
        raise _invalid(
            key, f"manifest.json is not valid JSON ({exc}).", file=MANIFEST_JSON
        ) from None
    if not isinstance(raw, dict):
        raise _invalid(key, "manifest.json is not a JSON object.", file=MANIFEST_JSON)
    if raw.get("schemaVersion") != 2:
        shown = json.dumps(raw.get("schemaVersion"))
        raise _invalid(key, f"manifest.json has schemaVersion {shown}; expected 2.")
    return raw


def _file_entry(key: str, index: int, item: Any) -> BundleFile:
    where = f"files[{index}]"
    if not isinstance(item, dict):
        raise _invalid(key, f"manifest {where} is not an object.", entry=where)
    try:
        path = check_file_name(str(item.get("path", "")), f"manifest {where}.path")
    except FlowdropError as exc:
        raise _invalid(key, exc.message, entry=where) from None
    metric = str(item.get("metric", ""))
    if metric not in _METRIC_NAMES:
        raise _invalid(key, f"manifest {where} has unknown metric '{metric}'.", entry=where)
    digest, points = item.get("hash"), item.get("points")
    if not isinstance(digest, str) or not digest.startswith("sha256:"):
        raise _invalid(key, f"manifest {where} ({path}) has no sha256 hash.", file=path)
    if not isinstance(points, int) or isinstance(points, bool):
        raise _invalid(key, f"manifest {where} ({path}) has no point count.", file=path)
    return BundleFile(
        node_id=str(item.get("nodeId", "")),
        metric=metric,
        path=path,
        hash=digest,
        points=points,
        class_id=str(item.get("classId") or DEFAULT_CLASS),
    )


def validate_bundle(
    bundle_dir: Path, key: str, *, expected: ExpectedGrid | None = None
) -> BundleManifest:
    """Check a bundle before replay; raise ``bundle_invalid`` naming the first problem found."""
    real_root = Path(os.path.realpath(bundle_dir))
    raw = _manifest(bundle_dir, real_root, key)
    grid = raw.get("grid")
    if not isinstance(grid, dict):
        raise _invalid(key, "manifest.json has no grid.")
    bins, bin_size = grid.get("bins"), grid.get("binSize")
    unit = str(grid.get("binUnit") or "minutes").lower()
    if not isinstance(bins, int) or not isinstance(bin_size, int) or bins < 1 or bin_size < 1:
        raise _invalid(key, "manifest grid needs positive integer bins and binSize.")
    if expected is not None:
        mine = (expected.bins, expected.bin_size, expected.bin_unit.lower())
        if (bins, bin_size, unit) != mine:
            msg = (
                f"its grid ({bins} x {bin_size} {unit}) does not match the template's "
                f"({mine[0]} x {mine[1]} {mine[2]})."
            )
            raise _invalid(key, msg, bundleGrid=[bins, bin_size, unit], templateGrid=list(mine))
    entries = raw.get("files")
    if not isinstance(entries, list) or not entries:
        raise _invalid(key, "manifest.json lists no files.")
    files = tuple(_file_entry(key, i, item) for i, item in enumerate(entries))
    facts: dict[str, trust.Fact] = {}
    for entry in files:
        if entry.path not in facts:
            facts[entry.path] = _check_file(bundle_dir, real_root, key, entry, bins)
    return BundleManifest(bins, bin_size, unit, files, raw, facts)


def _check_file(
    bundle_dir: Path, real_root: Path, key: str, entry: BundleFile, bins: int
) -> trust.Fact:
    field = f"bundle file {entry.path}"
    path, info = bundle_file(bundle_dir, entry.path, field=field, real_root=real_root)
    if info is None:
        raise _invalid(
            key, f"file '{entry.path}' listed in manifest.json is missing.", file=entry.path
        )
    known = trust.fact_of(path, info, entry.hash, entry.points, bins)
    if trust.is_verified(known):
        return known
    actual = sha256_file(path)
    if actual != entry.hash:
        msg = f"file '{entry.path}' does not match its manifest hash."
        raise _invalid(key, msg, file=entry.path, expected=entry.hash, actual=actual)
    lines = [line for line in path.read_text(encoding="utf-8-sig").splitlines() if line.strip()]
    if not lines or lines[0].strip().lower() != CSV_HEADER.lower():
        raise _invalid(
            key, f"file '{entry.path}' lacks the '{CSV_HEADER}' header.", file=entry.path
        )
    rows = len(lines) - 1
    if rows != bins or entry.points not in (0, bins):
        msg = f"file '{entry.path}' has {rows} rows (manifest says {entry.points}); the grid has {bins} bins."
        raise _invalid(key, msg, file=entry.path, rows=rows, bins=bins)
    trust.remember(known)
    return known


# --- publication -----------------------------------------------------------------------------


def remove_stale_staging(telemetry_root: Path, key: str) -> int:
    """Remove staging debris of ``key`` left by a crashed capture; returns how many.

    Only call this while holding the key's capture lock: then no live writer can own a
    ``.tmp-<key>.*`` directory (keys contain no ``.``, so the prefix belongs to this key only).
    """
    removed = 0
    for path in telemetry_root.glob(f"{TEMP_PREFIX}{key}.*"):
        if path.is_dir() and not path.is_symlink():
            remove_tree(path)
            removed += 1
    return removed


def build_bundle(
    telemetry_root: Path,
    key: str,
    fill: Callable[[Path], T],
    *,
    replace: bool,
    pending: PendingRenames | None = None,
) -> T:
    """Fill a staging directory beside ``TelemetryRoot/<key>`` and publish it as the bundle
    (:func:`~flowdrop.core.fs.storage.publish_staged`; failpoint ``capture_before_publish``
    between the two); returns what ``fill`` returned."""
    try:
        return publish_staged(
            telemetry_root,
            key,
            fill,
            replace=replace,
            root=telemetry_root,
            failpoint_name="capture_before_publish",
            pending=pending,
        )
    except StagingError as exc:
        msg = f"Could not create a staging directory for bundle '{key}': {exc.strerror or exc}."
        raise FlowdropError(ErrorCode.STORAGE_ERROR, msg, captureKey=key, errno=exc.errno) from exc
    except AlreadyPublished:
        msg = f"Telemetry bundle '{key}' appeared while it was being generated."
        raise FlowdropError(ErrorCode.CAPTURE_FAILED, msg, captureKey=key) from None
