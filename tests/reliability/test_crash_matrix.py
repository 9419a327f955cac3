"""Crash matrix: SIGKILL at every named failpoint, restart, and I1-I5 hold at every point.

Spool points run with ``counting_processor`` (exact execution counts); the points inside the
FlowTime side (mid-simulation, mid-capture before the bundle rename, after the replay) run the
real orchestrator on a tiny template. Reproduce one row::

    .venv/bin/pytest tests/reliability/test_crash_matrix.py -k after_result
"""

from __future__ import annotations

import random
import signal
import subprocess
import time

import pytest

from flowdrop.daemon.testing import read_json
from tests.reliability.reliability_world import World, record

# (failpoint, executions of the crashed request after the restart)
SPOOL_POINTS = [
    ("after_claim", 1),  # claimed into work/, nothing written yet
    ("after_running_status", 1),  # status says running, processor not called yet
    ("result_before_rename", 2),  # result temp durable, not renamed: the run is repeated
    ("after_result", 1),  # result published: restart only finishes the bookkeeping
    ("before_done_move", 1),  # terminal status + ledger written, request still in work/
]

# Real-orchestrator points, with a telemetry request whose bundle is missing.
ORCHESTRATOR_POINTS = [
    "run_before_publish=kill@1",  # mid-simulation: staged simulation run, not yet renamed
    "capture_before_publish=kill",  # bundle staged with bundle.json, not yet renamed
    "replay_before_publish=kill",  # replay written to staging
    "run_before_publish=kill@2",  # replay run staged, not yet renamed
    "result_before_rename=kill",  # result temp written
    "after_result=kill",  # result renamed
    "before_done_move=kill",  # before the request moves to done/
]


def _crash_once(world: World, env: dict[str, str]) -> None:
    crashing = world.start(env=env, wait=False)
    assert crashing.proc.wait(timeout=60) == -signal.SIGKILL, crashing.log_path.read_text()[-3000:]
    crashing.kill()


@pytest.mark.parametrize(("point", "runs"), SPOOL_POINTS, ids=[p for p, _ in SPOOL_POINTS])
def test_spool_failpoint_kill_restart(world: World, point: str, runs: int) -> None:
    """Killed at ``point`` with three requests queued: after a restart all end exactly once."""
    world.config(workers=1)
    for index in range(3):
        world.drop(f"c{index}", runs=runs)
    _crash_once(world, {"FLOWDROP_FAILPOINTS": f"{point}=kill"})
    world.check_partial()  # I2, I3 (bound), I4, I5 hold at the crash point itself
    daemon = world.start()
    world.wait_settled()
    assert daemon.stop() == 0
    report = world.check()
    assert report.states == {"succeeded": 3}
    assert sum(report.executions.values()) in {3, 2 + runs}
    for item in world.drops:
        assert read_json(world.spool / "state" / "ledger" / f"{item.request_id}.json") is not None


@pytest.mark.parametrize("spec", ORCHESTRATOR_POINTS)
def test_orchestrator_failpoint_kill_restart(world: World, spec: str) -> None:
    """Real orchestrator killed mid-simulation / mid-capture / mid-replay: one bundle, one run."""
    world.add_tiny_templates(("tiny", "tiny-key"))
    world.config(workers=1, processor=None)
    body = {"requestId": "tel", "templateId": "tiny", "mode": "telemetry"}
    world.drop("tel", body=body)
    world.drop("sim", body={"requestId": "sim", "templateId": "tiny", "mode": "simulation"})
    _crash_once(world, {"FLOWDROP_FAILPOINTS": spec})
    world.check_partial(counting=False)
    bundle = world.telemetry / "tiny-key"
    if spec.startswith(("run_before_publish=kill@1", "capture_before_publish")):
        assert not bundle.exists(), "a bundle became visible before its rename"
    daemon = world.start()
    world.wait_settled()
    assert daemon.stop() == 0
    report = world.check(counting=False)
    assert report.states == {"succeeded": 2}
    assert report.bundles == 1
    result = read_json(world.outbox / "tel.result.json")
    assert result["capture"]["captureKey"] == "tiny-key"
    generated = sum(len(d.events("autocapture_succeeded")) for d in world.daemons)
    assert generated == 1


@pytest.mark.heavy
def test_random_crash_rounds(world: World) -> None:
    """20 rounds of: drop a few requests, kill at a random failpoint/hit, restart; then settle."""
    rng = random.Random(20261130)
    world.config(workers=2, max_attempts=50)
    points = [p for p, _ in SPOOL_POINTS]
    crashes = 0
    for round_no in range(20):
        for index in range(4):
            world.drop(f"r{round_no}-{index}", state=None, sleep=rng.choice([0, 0.01]))
        if rng.random() < 0.2:  # duplicates of an earlier request, same content
            earlier = f"r{rng.randrange(round_no + 1)}-0"
            sleep = next(d for d in world.drops if d.request_id == earlier).params["sleep"]
            world.drop(earlier, name=f"dup-{round_no}.json", runs=0, state=None, sleep=sleep)
        spec = f"{rng.choice(points)}=kill@{rng.randint(1, 4)}"
        daemon = world.start(env={"FLOWDROP_FAILPOINTS": spec}, wait=False)
        try:
            code = daemon.proc.wait(timeout=3)
        except subprocess.TimeoutExpired:
            code = None
        if code is None:
            daemon.signal(signal.SIGKILL)
        daemon.kill()
        crashes += 1
        world.check_partial(run_allowance_all=1 + crashes)
    daemon = world.start()
    world.wait_settled(timeout=120)
    assert daemon.stop() == 0
    report = world.check(
        run_allowance={d.request_id: 1 + crashes for d in world.drops if d.request_id}
    )
    for item in world.drops:
        result = read_json(world.outbox / f"{item.request_id}.result.json")
        if result["state"] == "failed":
            assert result["error"]["code"] == "interrupted", result
    assert report.done == len(world.drops)
    record(
        "random_crash_rounds",
        {
            "rounds": 20,
            "crashes": crashes,
            "drops": len(world.drops),
            "executions": sum(report.executions.values()),
        },
    )


@pytest.mark.heavy
def test_orchestrator_points_repeated(world: World) -> None:
    """Every orchestrator failpoint twice more, each round with a fresh captureKey, one daemon
    restart per crash; at the end every bundle was generated once and every request ended."""
    keys = [(f"tpl{r}", f"key-{r}") for r in range(2)]
    world.add_tiny_templates(*keys)
    world.config(workers=1, processor=None, max_attempts=20)
    crashes = 0
    for round_no, (template_id, _key) in enumerate(keys):
        for index, spec in enumerate(ORCHESTRATOR_POINTS):
            request_id = f"o{round_no}-{index}"
            body = {
                "requestId": request_id,
                "templateId": template_id,
                "mode": "telemetry",
                "options": {"forceCapture": False},
            }
            world.drop(request_id, body=body)
            daemon = world.start(env={"FLOWDROP_FAILPOINTS": spec}, wait=False)
            try:
                died = daemon.proc.wait(timeout=10) == -signal.SIGKILL
            except subprocess.TimeoutExpired:
                died = False  # the point is past for this key (bundle already published)
            daemon.kill()
            crashes += died
            world.check_partial(counting=False)
    daemon = world.start()
    world.wait_settled(timeout=120)
    assert daemon.stop() == 0
    report = world.check(counting=False)
    assert report.states == {"succeeded": len(world.drops)}
    assert report.bundles == len(keys)
    assert crashes >= len(keys) * 3


def test_sighup_storm_then_sigterm_mid_burst(world: World) -> None:
    """Reloads during a burst, then SIGTERM with a short drain: leftovers resume after restart."""
    world.config(workers=2, drain_timeout=0.3, reconcile_interval=0.5)
    daemon = world.start()
    for index in range(150):
        world.drop(f"b{index}", sleep=0.5 if index % 10 == 0 else 0.01)
    for _ in range(5):
        daemon.signal(signal.SIGHUP)
        time.sleep(0.1)
    daemon.signal(signal.SIGTERM)
    assert daemon.proc.wait(timeout=30) == 0
    daemon.kill()
    world.check_partial(run_allowance_all=2)
    assert len(daemon.events("config_reloaded")) >= 1
    restarted = world.start()
    world.wait_settled(timeout=60)
    assert restarted.stop() == 0
    report = world.check(run_allowance={d.request_id: 2 for d in world.drops if d.request_id})
    assert report.states == {"succeeded": 150}


def test_kill_between_reason_and_quarantine_rename(world: World) -> None:
    """Killed after a reason file is written but before its file moves: after a restart each
    refused file is quarantined once, next to one reason, and its rejected status stands."""
    world.config(workers=1, stale_after=0)
    world.drop_raw("bad-1.json", b"{nope", request_id="bad-1", code="invalid_json")
    world.drop_raw("bad-2.json", b"[]", request_id="bad-2", code="invalid_request")
    world.drop("fine")
    _crash_once(world, {"FLOWDROP_FAILPOINTS": "quarantine_before_rename=kill"})
    world.check_partial()
    daemon = world.start()
    world.wait_settled()
    assert daemon.stop() == 0
    report = world.check()
    assert report.quarantined == 2
    reasons = sorted(p.name for p in world.quarantine.glob("*.reason.json"))
    assert reasons == ["bad-1.json.reason.json", "bad-2.json.reason.json"]
