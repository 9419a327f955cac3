"""Several daemons on one spool, killed and restarted at random: exactly once still holds.

Reproduce::

    .venv/bin/pytest tests/reliability/test_multi_instance.py -s            # capture sub-scenario
    .venv/bin/pytest tests/reliability/test_multi_instance.py -m heavy -s   # 3 x 5,000 chaos
"""

from __future__ import annotations

import random
import signal
import threading
import time

import pytest

from flowdrop.daemon.testing import DaemonProcess, read_json
from tests.reliability.reliability_world import World, record


@pytest.mark.heavy
def test_three_instances_5000_requests_random_kills(fast_world: World) -> None:
    """3 daemons, 5,000 requests (plus same-content re-drops), SIGKILL + restart at random."""
    world = fast_world
    rng = random.Random(5000)
    config = world.config(workers=2, reconcile_interval=0.5, max_attempts=20)
    daemons: list[DaemonProcess] = [world.start(config) for _ in range(3)]
    kills = 0
    stop = threading.Event()

    def chaos() -> None:
        nonlocal kills
        while not stop.wait(rng.uniform(0.2, 0.6)):
            slot = rng.randrange(3)
            daemons[slot].signal(signal.SIGKILL)
            daemons[slot].kill()
            kills += 1
            daemons[slot] = world.start(config, wait=False)

    thread = threading.Thread(target=chaos, daemon=True)
    started = time.monotonic()
    thread.start()
    try:
        for index in range(5_000):
            delay = rng.choice([0, 0, 0.002])
            params = {"sleep": delay} if delay else {}
            world.drop(f"m{index}", **params)
            if index % 97 == 0:  # same content under another name: must not run again
                world.drop(f"m{index}", name=f"m{index}-again.json", runs=0, **params)
            if index % 500 == 499:
                time.sleep(0.2)
        deadline = time.monotonic() + 60
        while world.pending() and time.monotonic() < deadline:  # keep killing while work is left
            time.sleep(0.5)
    finally:
        stop.set()
        thread.join(timeout=10)
    world.wait_settled(timeout=240)
    elapsed = time.monotonic() - started
    for daemon in daemons:
        daemon.wait_ready(timeout=60)  # a SIGTERM before the handlers exist would kill it
        assert daemon.stop() == 0
    allowance = {d.request_id: 1 + kills for d in world.drops if d.request_id}
    report = world.check(run_allowance=allowance)
    assert report.states == {"succeeded": 5_000}
    reruns = sum(report.executions.values()) - 5_000
    assert reruns <= kills * 2, (reruns, kills)  # at most the in-flight ones of each kill
    instances = {
        read_json(world.outbox / f"m{i}.status.json")["instance"] for i in range(0, 5_000, 50)
    }
    record(
        "multi_instance",
        {
            "requests": 5_000,
            "kills": kills,
            "reRunsAfterKills": reruns,
            "seconds": round(elapsed, 1),
            "instancesSeen": len(instances),
            "duplicatesDropped": sum(1 for d in world.drops if d.runs == 0),
        },
    )


def test_one_capture_key_across_instances(world: World) -> None:
    """Real orchestrator, 3 instances, 6 telemetry requests for one captureKey, one instance
    killed mid-capture: the bundle is generated exactly once and every request replays it."""
    world.add_tiny_templates(("tiny", "tiny-key"))
    config = world.config(workers=2, processor=None, reconcile_interval=0.5)
    victim = world.start(config, env={"FLOWDROP_FAILPOINTS": "capture_before_publish=kill"})
    world.drop("cap-0", body={"requestId": "cap-0", "templateId": "tiny", "mode": "telemetry"})
    assert victim.proc.wait(timeout=30) == -signal.SIGKILL
    victim.kill()
    assert not (world.telemetry / "tiny-key").exists()
    others = [world.start(config) for _ in range(3)]
    for index in range(1, 6):
        body = {
            "requestId": f"cap-{index}",
            "templateId": "tiny",
            "mode": "telemetry",
            "parameters": {"bins": 4},
        }
        world.drop(f"cap-{index}", body=body)
    world.wait_settled(timeout=60)
    for daemon in others:
        assert daemon.stop() == 0
    report = world.check(counting=False)
    assert report.states == {"succeeded": 6}
    assert report.bundles == 1
    statuses = [
        read_json(world.outbox / f"cap-{i}.result.json")["capture"]["status"] for i in range(6)
    ]
    assert statuses.count("generated") == 1, statuses
    generated = sum(len(d.events("autocapture_succeeded")) for d in world.daemons)
    assert generated == 1
