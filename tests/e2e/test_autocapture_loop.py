"""The whole simulate -> capture -> replay loop on the real FlowTime templates, in tmp_path roots.

Also: concurrency (threads and processes asking for the same missing bundle) and attacks on
every path field of a request (nothing may appear, change or vanish outside the roots).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from flowdrop.core import engine
from flowdrop.core.contract import CaptureStatus, RunRequest, RunResult, State
from flowdrop.core.errors import ErrorCode
from flowdrop.core.orchestration.orchestrator import Roots, orchestrate
from tests.realtemplates import real_template_paths

FIXED = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
SEED = {"kind": "pcg32", "seed": 20250101}
CAPTURE_TEMPLATES = [
    p for p in real_template_paths() if engine.load_template(p).capture_key is not None
]


def _roots(base: Path, templates: Path) -> Roots:
    (base / "runs").mkdir(parents=True)
    (base / "telemetry").mkdir()
    return Roots(base / "runs", base / "telemetry", (templates,))


def _request(template_id: str, **fields: Any) -> RunRequest:
    body: dict[str, Any] = {"templateId": template_id, "mode": "telemetry", "rng": SEED}
    body.update(fields)
    return RunRequest.model_validate_json(json.dumps(body))


def _go(roots: Roots, template_id: str, **fields: Any) -> RunResult:
    return orchestrate(
        _request(template_id, **fields), roots, request_id="e2e", clock=lambda: FIXED
    )


def _stat_tree(root: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(root)): (p.stat().st_ino, p.stat().st_mtime_ns) for p in root.rglob("*")
    }


@pytest.fixture(name="world")
def _world(tmp_path: Path, flowtime_templates: Path) -> Roots:
    return _roots(tmp_path / "world", flowtime_templates)


@pytest.mark.parametrize("template_path", CAPTURE_TEMPLATES, ids=lambda p: p.stem)
def test_missing_then_reused(template_path: Path, tmp_path: Path) -> None:
    """missing -> generated; again -> reused with no simulation, no capture, nothing touched."""
    template = engine.load_template(template_path)
    roots = _roots(tmp_path / "w", template_path.parent)
    key = template.capture_key
    assert key is not None

    first = _go(roots, template.id)
    assert first.state is State.SUCCEEDED, first.error
    assert (first.capture.status, first.capture_generated) == (CaptureStatus.GENERATED, True)
    bundle = roots.telemetry / key
    info = json.loads((bundle / "bundle.json").read_text())
    assert (info["templateId"], info["captureKey"], info["rngSeed"]) == (template.id, key, 20250101)
    assert info["sourceRunId"] == first.capture.source_run_id
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["schemaVersion"] == 2 and manifest["files"]
    assert (roots.runs / first.capture.source_run_id / "run.json").is_file()
    assert (
        roots.runs / first.run.run_id / "model" / "telemetry" / "telemetry-manifest.json"
    ).is_file()

    before_runs, before_tel = _stat_tree(roots.runs), _stat_tree(roots.telemetry)
    again = _go(roots, template.id)
    assert (again.capture.status, again.capture_generated) == (CaptureStatus.REUSED, False)
    assert again.run.was_reused is True
    assert again.capture.source_run_id == first.capture.source_run_id
    assert _stat_tree(roots.runs) == before_runs
    assert _stat_tree(roots.telemetry) == before_tel
    assert not {"simulate", "capture", "replay"} & again.timings.keys()


@pytest.mark.parametrize("template_id", ["warehouse-picker-waves", "it-system-microservices"])
def test_forced_capture_regenerates(world: Roots, template_id: str) -> None:
    """forceCapture regenerates an existing bundle (new inode) and replays again."""
    first = _go(world, template_id)
    assert first.capture is not None and first.capture.capture_key is not None
    bundle = world.telemetry / first.capture.capture_key
    inode = bundle.stat().st_ino
    forced = _go(world, template_id, options={"forceCapture": True})
    assert (forced.capture.status, forced.capture_generated) == (CaptureStatus.GENERATED, True)
    assert bundle.stat().st_ino != inode
    assert forced.run.was_reused is False
    assert "simulate" not in forced.timings  # the deterministic simulation run is reused
    leftovers = [p for r in (world.runs, world.telemetry) for p in r.iterdir()]
    assert not [p for p in leftovers if p.name.startswith(".tmp-")]


def test_stochastic_without_seed_is_blocked_and_writes_nothing(world: Roots) -> None:
    """Every real template declares rng: without rng.seed nothing is captured or written."""
    request = RunRequest.model_validate_json(
        json.dumps({"templateId": "it-system-microservices", "mode": "telemetry"})
    )
    result = orchestrate(request, world, request_id="s")
    assert result.error is not None
    assert result.error.code is ErrorCode.STOCHASTIC_TEMPLATE
    assert result.error.message.startswith(
        "Template 'it-system-microservices' declares randomness (rng block, pmf node "
        "'user_requests', pmf node 'load_balancer_capacity'"
    )
    assert result.error.details["reasons"][0] == "rng block"
    assert list(world.runs.iterdir()) == [] and list(world.telemetry.iterdir()) == []


def test_opt_out_is_capture_missing(world: Roots) -> None:
    """autoCapture false with a missing bundle: capture_missing, nothing written."""
    result = _go(world, "warehouse-picker-waves", options={"autoCapture": False})
    assert result.error is not None
    assert result.error.code is ErrorCode.CAPTURE_MISSING
    assert result.error.message == (
        "Telemetry bundle 'warehouse-picker' does not exist under the telemetry root and "
        "options.autoCapture is false: capture it first, or set options.autoCapture to true."
    )
    assert list(world.runs.iterdir()) == [] and list(world.telemetry.iterdir()) == []


def test_loop_parity_template_through_explicit_capture_directory(world: Roots) -> None:
    """The keyless loop-parity-template loops through an explicit captureDirectory."""
    missing = _go(world, "loop-parity-template")
    assert missing.error is not None and missing.error.code is ErrorCode.CAPTURE_KEY_MISSING
    result = _go(world, "loop-parity-template", telemetry={"captureDirectory": "loop-parity"})
    assert result.capture.status is CaptureStatus.GENERATED
    source = engine.read_run(world.runs / result.capture.source_run_id)
    replay = engine.read_run(world.runs / result.run.run_id)
    for node in ("total_arrivals", "total_served", "total_errors"):
        assert replay.node_series(node).tolist() == source.node_series(node).tolist()
        for class_id, values in source.classes_of(node).items():
            assert replay.classes_of(node)[class_id].tolist() == values.tolist()
    assert replay.classes_of("total_arrivals")["Retail"].tolist() == list(range(10, 22))


# --- concurrency ---------------------------------------------------------------------------


def _worker(runs: str, telemetry: str, templates: str, index: int, out: str) -> None:
    roots = Roots(Path(runs), Path(telemetry), (Path(templates),))
    request = _request("warehouse-picker-waves", options={"runId": f"replay-{index}"})
    result = orchestrate(request, roots, request_id=f"c{index}")
    Path(out).write_text(result.model_dump_json(by_alias=True))


def _check_one_capture(results: list[dict[str, Any]], roots: Roots, n: int) -> None:
    assert [r["state"] for r in results] == ["succeeded"] * n
    statuses = sorted(r["capture"]["status"] for r in results)
    assert statuses == ["generated"] + ["reused"] * (n - 1)
    assert sum(r["captureGenerated"] for r in results) == 1
    assert sorted(p.name for p in roots.telemetry.iterdir()) == [".locks", "warehouse-picker"]
    sources = {r["capture"]["sourceRunId"] for r in results}
    assert len(sources) == 1
    for index in range(n):
        assert (roots.runs / f"replay-{index}" / "run.json").is_file()


def test_threads_share_one_capture(world: Roots, tmp_path: Path) -> None:
    """N threads asking for the same missing bundle: one capture, N successful replays."""
    n = 6
    outs = [tmp_path / f"t{i}.json" for i in range(n)]
    threads = [
        threading.Thread(
            target=_worker,
            args=(str(world.runs), str(world.telemetry), str(world.templates[0]), i, str(outs[i])),
        )
        for i in range(n)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    _check_one_capture([json.loads(o.read_text()) for o in outs], world, n)


_CHILD = """
import sys
from pathlib import Path
from flowdrop.core.contract import RunRequest
from flowdrop.core.orchestration.orchestrator import Roots, orchestrate
runs, telemetry, templates, index, out, body = sys.argv[1:7]
roots = Roots(Path(runs), Path(telemetry), (Path(templates),))
result = orchestrate(RunRequest.model_validate_json(body), roots, request_id="p" + index)
Path(out).write_text(result.model_dump_json(by_alias=True))
"""


def test_processes_share_one_capture(world: Roots, tmp_path: Path) -> None:
    """N separate processes asking for the same missing bundle: one capture, N replays."""
    n = 4
    outs = [tmp_path / f"p{i}.json" for i in range(n)]
    procs = []
    for i in range(n):
        body = _request("warehouse-picker-waves", options={"runId": f"replay-{i}"})
        argv = [str(world.runs), str(world.telemetry), str(world.templates[0]), str(i)]
        argv += [str(outs[i]), body.model_dump_json(by_alias=True)]
        procs.append(subprocess.Popen([sys.executable, "-c", _CHILD, *argv]))
    for proc in procs:
        assert proc.wait(120) == 0
    _check_one_capture([json.loads(o.read_text()) for o in outs], world, n)


# --- attacks -------------------------------------------------------------------------------


def _outside_listing(base: Path, roots: Roots) -> dict[str, str]:
    """Every path under ``base`` that is not inside a root, with a content hash."""
    inside = {roots.runs, roots.telemetry}
    listing = {}
    for current, dirs, files in os.walk(base, followlinks=False):
        here = Path(current)
        dirs[:] = [d for d in dirs if here / d not in inside]
        for name in [*dirs, *files]:
            path = here / name
            if path.is_symlink():
                listing[str(path.relative_to(base))] = "link:" + os.readlink(path)
            elif path.is_file():
                listing[str(path.relative_to(base))] = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                listing[str(path.relative_to(base))] = "dir"
    return listing


@pytest.fixture(name="arena")
def _arena(tmp_path: Path, flowtime_templates: Path) -> Iterator[tuple[Path, Roots]]:
    base = tmp_path / "arena"
    templates = base / "templates"
    templates.mkdir(parents=True)
    shutil.copy(flowtime_templates / "warehouse-picker-waves.yaml", templates)
    evil = (flowtime_templates / "warehouse-picker-waves.yaml").read_text()
    evil = evil.replace("id: warehouse-picker-waves", "id: evil-key")
    (templates / "evil.yaml").write_text(
        evil.replace("captureKey: warehouse-picker", "captureKey: ../outside")
    )
    roots = _roots(base, templates)
    outside = base / "outside"
    outside.mkdir()
    (outside / "precious.txt").write_text("do not touch")
    (base / "runs-sibling").mkdir()
    os.symlink(outside, roots.telemetry / "linked-out")
    os.symlink(outside, roots.runs / "linked-run")
    os.symlink(base / "outside" / "new-dir", roots.runs / "dangling-run")
    yield base, roots


ATTACKS: list[tuple[str, dict[str, Any]]] = [
    ("captureDirectory ..", {"telemetry": {"captureDirectory": ".."}}),
    ("captureDirectory ../outside", {"telemetry": {"captureDirectory": "../outside"}}),
    ("captureDirectory absolute", {"telemetry": {"captureDirectory": "/tmp"}}),
    ("captureDirectory symlink out", {"telemetry": {"captureDirectory": "linked-out"}}),
    ("captureDirectory empty", {"telemetry": {"captureDirectory": ""}}),
    ("captureDirectory dot", {"telemetry": {"captureDirectory": "."}}),
    ("captureDirectory NUL", {"telemetry": {"captureDirectory": "a\u0000b"}}),
    ("captureDirectory control", {"telemetry": {"captureDirectory": "a\u001bb"}}),
    ("captureDirectory too long", {"telemetry": {"captureDirectory": "k" * 128}}),
    ("runId ..", {"options": {"runId": ".."}}),
    ("runId traversal", {"options": {"runId": "../runs-sibling/x"}}),
    ("runId absolute", {"options": {"runId": "/tmp/x"}}),
    ("runId symlink out", {"options": {"runId": "linked-run"}}),
    ("runId dangling symlink out", {"options": {"runId": "dangling-run"}}),
    ("runId empty", {"options": {"runId": ""}}),
    ("runId NUL", {"options": {"runId": "r\u0000"}}),
    ("runId too long", {"options": {"runId": "r" * 200}}),
    ("binding ..", {"telemetry": {"bindings": {"telemetryInboundSource": ".."}}}),
    ("binding traversal", {"telemetry": {"bindings": {"telemetryInboundSource": "../x.csv"}}}),
    ("binding absolute", {"telemetry": {"bindings": {"telemetryInboundSource": "/etc/passwd"}}}),
    ("binding separator", {"telemetry": {"bindings": {"telemetryInboundSource": "a/b.csv"}}}),
    ("binding hidden", {"telemetry": {"bindings": {"telemetryInboundSource": ".tmp-x"}}}),
    ("binding NUL", {"telemetry": {"bindings": {"telemetryInboundSource": "x\u0000.csv"}}}),
    ("binding empty", {"telemetry": {"bindings": {"telemetryInboundSource": ""}}}),
    ("template captureKey", {"templateId": "evil-key"}),
]


@pytest.mark.parametrize(("label", "fields"), ATTACKS, ids=[a[0] for a in ATTACKS])
def test_path_attacks_are_refused_and_touch_nothing(
    arena: tuple[Path, Roots], label: str, fields: dict[str, Any]
) -> None:
    """Each hostile path field is path_violation; nothing outside (or inside) the roots changes."""
    base, roots = arena
    before_outside = _outside_listing(base, roots)
    before_inside = {p.name for r in (roots.runs, roots.telemetry) for p in r.iterdir()}
    template_id = fields.pop("templateId", "warehouse-picker-waves")
    result = _go(roots, template_id, **fields)
    assert result.error is not None, label
    assert result.error.code is ErrorCode.PATH_VIOLATION, (label, result.error)
    assert str(base) not in result.model_dump_json()
    assert _outside_listing(base, roots) == before_outside
    after_inside = {p.name for r in (roots.runs, roots.telemetry) for p in r.iterdir()}
    assert after_inside == before_inside


def test_locks_directory_symlinked_out_is_refused(arena: tuple[Path, Roots]) -> None:
    """A ``.locks`` symlink leading out of the telemetry root is refused before locking."""
    base, roots = arena
    os.symlink(base / "outside", roots.telemetry / ".locks")
    before = _outside_listing(base, roots)
    result = _go(roots, "warehouse-picker-waves")
    assert result.error is not None
    assert result.error.code is ErrorCode.PATH_VIOLATION
    assert (
        result.error.message == "captureKey resolves outside its root (a symlink leads elsewhere)."
    )
    assert _outside_listing(base, roots) == before


def test_bundle_file_symlinked_out_is_refused(arena: tuple[Path, Roots]) -> None:
    """A bundle whose manifest lists a file that is a symlink out of the root is refused."""
    base, roots = arena
    assert _go(roots, "warehouse-picker-waves").state is State.SUCCEEDED
    bundle = roots.telemetry / "warehouse-picker"
    target = next(p for p in bundle.glob("*.csv"))
    shutil.copy(target, base / "outside" / "copy.csv")
    target.unlink()
    os.symlink(base / "outside" / "copy.csv", target)
    before = _outside_listing(base, roots)
    result = _go(roots, "warehouse-picker-waves", options={"runId": "after-link"})
    assert result.error is not None
    assert result.error.code is ErrorCode.PATH_VIOLATION
    assert _outside_listing(base, roots) == before
    assert not (roots.runs / "after-link").exists()
