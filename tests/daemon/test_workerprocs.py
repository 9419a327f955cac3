"""Worker processes: real templates give the pinned bytes through them with warm caches; a
killed worker is replaced and its request resumed; a request past request_timeout ends
``timeout`` with nothing published."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from flowdrop.core.contract import RunRequest, State
from flowdrop.core.errors import ErrorCode
from flowdrop.daemon.config import Settings
from flowdrop.daemon.testing import (
    counting_processor,
    expensive_template,
    fixed_clock_orchestrator,
    mini_template,
    wait_until,
)
from flowdrop.daemon.workerlost import WorkerLost
from flowdrop.daemon.workerprocs import WorkerProcesses
from tests.realtemplates import templates_dir

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "run_bytes.json"


def _settings(base: Path, templates: Path) -> Settings:
    for name in ("runs", "telemetry"):
        (base / name).mkdir(parents=True, exist_ok=True)
    return Settings.model_validate(
        {
            "spool": base / "spool",
            "runs_root": base / "runs",
            "telemetry_root": base / "telemetry",
            "templates": [templates],
            "workers": 1,
            "log_format": "json",
            "log_level": "error",
        }
    )


@pytest.fixture
def procs_of(tmp_path: Path) -> Iterator[list[WorkerProcesses]]:
    made: list[WorkerProcesses] = []
    yield made
    for procs in made:
        procs.close()


def _request(template_id: str, mode: str = "telemetry") -> RunRequest:
    body = {"templateId": template_id, "mode": mode, "rng": {"kind": "pcg32", "seed": 7}}
    return RunRequest.model_validate_json(json.dumps(body))


def _digests(root: Path) -> dict[str, str]:
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file() and not path.name.endswith(".lock")
    }


def test_real_templates_through_a_worker_process_with_warm_caches_write_the_pinned_bytes(
    tmp_path: Path, procs_of: list[WorkerProcesses]
) -> None:
    """Caches and processes change nothing: the golden digests were pinned without them."""
    templates = templates_dir()
    if templates is None or not templates.is_dir():
        pytest.skip("real FlowTime templates not found")
    golden = json.loads(GOLDEN.read_text())
    settings = _settings(tmp_path, templates)
    procs = WorkerProcesses(settings, factory=fixed_clock_orchestrator)
    procs_of.append(procs)
    for template_id, expected in sorted(golden.items()):
        for attempt in ("cold", "warm"):  # the second one is served from both caches
            for root in (settings.runs_root, settings.telemetry_root):
                shutil.rmtree(root)
                root.mkdir()
            result = procs.run(_request(template_id), "pin", lambda *_: None, timeout=120)
            assert result.state is State.SUCCEEDED, (template_id, attempt, result.error)
            seen = {
                "runs": _digests(settings.runs_root),
                "telemetry": _digests(settings.telemetry_root),
            }
            assert seen == expected, (template_id, attempt)
    assert procs.cache_stats().hits >= len(golden)


def _expensive_world(tmp_path: Path) -> Settings:
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "slow.yaml").write_text(expensive_template("slow"))
    (templates / "mini.yaml").write_text(mini_template("mini", None))
    return _settings(tmp_path, templates)


def test_a_request_past_its_timeout_ends_timeout_and_publishes_nothing(
    tmp_path: Path, procs_of: list[WorkerProcesses]
) -> None:
    settings = _expensive_world(tmp_path)
    procs = WorkerProcesses(settings)
    procs_of.append(procs)
    procs.start(1)
    result = procs.run(_request("slow", "simulation"), "slow-1", lambda *_: None, timeout=1.0)
    assert result.state is State.FAILED
    assert result.error is not None and result.error.code is ErrorCode.TIMEOUT
    assert [p.name for p in settings.runs_root.iterdir() if not p.name.startswith(".")] == []
    stats = procs.stats()
    assert (stats.timeouts, stats.replaced) == (1, 1)
    after = procs.run(_request("mini", "simulation"), "mini-1", lambda *_: None, timeout=60)
    assert after.state is State.SUCCEEDED, after.error


def test_a_killed_worker_is_replaced_and_its_request_raises_worker_lost(
    tmp_path: Path, procs_of: list[WorkerProcesses]
) -> None:
    settings = _expensive_world(tmp_path)
    procs = WorkerProcesses(settings)
    procs_of.append(procs)
    procs.start(1)
    (victim,) = procs.stats().pids

    def kill_soon() -> None:
        time.sleep(0.5)
        os.kill(victim, signal.SIGKILL)

    threading.Thread(target=kill_soon, daemon=True).start()
    with pytest.raises(WorkerLost):
        procs.run(_request("slow", "simulation"), "slow-2", lambda *_: None, timeout=120)
    assert procs.stats().replaced == 1
    after = procs.run(_request("mini", "simulation"), "mini-2", lambda *_: None, timeout=60)
    assert after.state is State.SUCCEEDED, after.error
    assert victim not in procs.stats().pids


def test_submit_hands_the_request_over_before_its_result_is_asked_for(
    tmp_path: Path, procs_of: list[WorkerProcesses]
) -> None:
    """The child starts on a submitted request at once (the daemon's start batch overlaps it);
    ``result`` then relays its progress and answers."""
    settings = _expensive_world(tmp_path)
    procs = WorkerProcesses(settings, factory=counting_processor)
    procs_of.append(procs)
    procs.start(1)
    body = {"templateId": "mini", "mode": "simulation", "parameters": {"sleep": 0.2}}
    pending = procs.submit(RunRequest.model_validate_json(json.dumps(body)), "early", timeout=60)
    executions = settings.runs_root / "executions"
    wait_until(lambda: any(executions.glob("early.*")), timeout=30, message="child started")
    phases: list[str] = []
    result = pending.result(lambda phase, _message: phases.append(phase.value))
    assert result.state is State.SUCCEEDED, result.error
    assert phases == ["simulating", "writing"]
    assert procs.stats().alive == 1  # given back, not replaced
