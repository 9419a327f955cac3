"""Power cuts: SIGKILL the daemon and drop every un-fsynced byte (``lazyfs::clear-cache``),
remount, check, restart on the same directory; at the end every request ended exactly once.

    python3 dev.py test tests/powerloss/test_power_cuts.py -k bursts    # random cuts
    python3 dev.py test tests/powerloss/test_power_cuts.py -k capture   # cut mid-capture

``FLOWDROP_POWERLOSS_SEED`` replays one random schedule; ``FLOWDROP_POWERLOSS_CUTS`` sets how
many cuts the burst scenario makes (default 14).
"""

from __future__ import annotations

import os
import random
import time

import pytest

from flowdrop.daemon.testing import read_json, wait_until
from tests.powerloss.powerworld import KINDS, PowerWorld
from tests.reliability.reliability_world import record

pytestmark = pytest.mark.powerloss

CUTS = int(os.environ.get("FLOWDROP_POWERLOSS_CUTS", "14"))


def _seed() -> int:
    return int(os.environ.get("FLOWDROP_POWERLOSS_SEED", str(time.time_ns() % 1_000_000)))


def test_random_cuts_during_mixed_bursts(power_world: PowerWorld) -> None:
    """Cuts at random moments of bursts of every request kind; I1-I5 and P1-P5 hold after each
    cut (before the restart) and at the end."""
    seed = _seed()
    print(f"FLOWDROP_POWERLOSS_SEED={seed}")
    rng = random.Random(seed)
    world = power_world
    world.configure()
    world.seed()
    world.start()
    world.wait_settled(timeout=60)
    for cut in range(CUTS):
        for kind in rng.sample(KINDS, k=rng.randint(3, 6)):
            world.drop_kind(kind, rng)
        time.sleep(rng.choice([0.0, rng.uniform(0.0, 0.4), rng.uniform(0.2, 1.5)]))
        world.kill_daemons()
        before = world.snapshot()
        world.fs.power_cut()
        world.after_cut(before, f"after cut {cut + 1} (seed {seed})")
        world.start()
    world.wait_settled(timeout=120)
    assert world.daemons[-1].stop() == 0
    world.final_check()
    world.sweep_check()
    record(
        "powerloss_random_cuts",
        {
            "seed": seed,
            "cuts": world.fs.cuts,
            "requests": len(world.drops),
            "in_flight_at_cuts": dict(world.tally.in_flight),
            "outcomes": dict(world.tally.outcomes),
            "kinds": dict(world.tally.kinds),
        },
    )


@pytest.mark.parametrize("worker_processes", [True, False], ids=["process", "thread"])
def test_cut_while_a_worker_is_mid_capture(power_world: PowerWorld, worker_processes: bool) -> None:
    """The worker (a worker process, or a thread with ``worker_processes: false``) has staged a
    bundle (CSV files, manifest, bundle.json written, none fsynced yet) when the power goes: no
    bundle, no half bundle; after the restart the bundle is generated once and every request
    ends as it would have."""
    world = power_world
    world.configure(workers=2, worker_processes=worker_processes)
    world.start(env={"FLOWDROP_FAILPOINTS": "capture_before_publish=sleep:60"})
    rng = random.Random(7)
    tel = world.drop_kind("telemetry, bundle generated", rng)
    world.drop_kind("simulation", rng)
    key = f"k{tel.request_id}"

    def staged() -> bool:
        status = read_json(world.outbox / f"{tel.request_id}.status.json") or {}
        stages = list(world.telemetry.glob(f".tmp-{key}.*/bundle.json"))
        return status.get("phase") == "capturing" and bool(stages)

    wait_until(staged, timeout=30, message="the bundle to be staged")
    world.kill_daemons()
    before = world.snapshot()
    assert key not in before.bundles
    world.fs.power_cut()
    world.after_cut(before, "after the mid-capture cut")
    assert not (world.telemetry / key).exists(), "a bundle appeared without its publish"
    debris = list(world.telemetry.glob(f".tmp-{key}.*"))
    assert debris, "the cut should have left the staging directory (hidden) behind"
    world.start()
    world.wait_settled(timeout=60)
    assert world.daemons[-1].stop() == 0
    world.final_check()
    result = read_json(world.outbox / f"{tel.request_id}.result.json")
    assert result["capture"]["status"] == "generated", result
    assert (world.telemetry / key / "bundle.json").is_file()
    assert not list(world.telemetry.glob(f".tmp-{key}.*")), "regenerating left the old staging"
    world.sweep_check()
    record(
        "powerloss_mid_capture",
        {
            "requests": len(world.drops),
            "outcomes": dict(world.tally.outcomes),
            "debris_swept": world.tally.debris,
        },
    )


def test_cut_after_a_request_without_fsync_was_acknowledged(power_world: PowerWorld) -> None:
    """A client that renamed its file in without fsync (README's cp + mv) gets a running status;
    the power goes: the request must still end once, as it would have (regression: it came back
    empty and stayed "running" forever)."""
    world = power_world
    world.configure(workers=1)
    world.start(env={"FLOWDROP_FAILPOINTS": "after_running_status=sleep:60"})
    fragile = world.drop_kind("simulation, cp+mv drop without fsync", random.Random(1))

    def running() -> bool:
        status = read_json(world.outbox / f"{fragile.request_id}.status.json") or {}
        return status.get("state") == "running"

    wait_until(running, timeout=30, message="the running status")
    world.kill_daemons()
    before = world.snapshot()
    world.fs.power_cut()
    world.after_cut(before, "after the cut of an acknowledged cp+mv drop")
    world.start()
    world.wait_settled(timeout=60)
    assert world.daemons[-1].stop() == 0
    world.final_check()
    assert read_json(world.outbox / f"{fragile.request_id}.result.json")["state"] == "succeeded"


def test_interrupted_only_when_every_attempt_was_cut(power_world: PowerWorld) -> None:
    """``max_attempts`` 2: a request in flight at both of its attempts ends ``interrupted`` —
    the attempt count survived both cuts — and one dropped between the cuts is untouched."""
    world = power_world
    world.configure(workers=1, max_attempts=2)
    held = {"FLOWDROP_FAILPOINTS": "after_running_status=sleep:60"}
    victim = world.drop_kind("simulation", random.Random(2))
    victim.state, victim.code = "failed", "interrupted"
    status_path = world.outbox / f"{victim.request_id}.status.json"
    for attempt in (1, 2):
        world.start(env=held)

        def in_flight(attempt: int = attempt) -> bool:
            status = read_json(status_path) or {}
            message = str(status.get("message", ""))
            return status.get("state") == "running" and (
                attempt == 1 or f"attempt {attempt} of 2" in message
            )

        wait_until(in_flight, timeout=30, message=f"attempt {attempt} running")
        world.kill_daemons()
        before = world.snapshot()
        world.fs.power_cut()
        world.after_cut(before, f"after the cut of attempt {attempt}")
    bystander = world.drop_kind("simulation", random.Random(3))
    world.start()
    world.wait_settled(timeout=60)
    assert world.daemons[-1].stop() == 0
    world.final_check()
    assert read_json(world.outbox / f"{bystander.request_id}.result.json")["state"] == "succeeded"
    assert world.tally.outcomes == {"failed/interrupted": 1, "succeeded": 1}
