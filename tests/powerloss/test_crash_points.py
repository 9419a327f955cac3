"""LazyFS crashes on the operations that matter: the filesystem itself dies (un-synced data lost)
just before or after the rename or fsync of a claim, a status, a result, the ledger, the move to
``done/``, a run directory publish, a bundle publish, a quarantine; then remount and restart.

    python3 dev.py test tests/powerloss/test_crash_points.py              # every point
    python3 dev.py test tests/powerloss/test_crash_points.py -k result    # one family

Each point must fire (a point that never fires fails the test: it would prove nothing). The
results a reader saw before the crash (sampled every 50 ms) must survive it; after the restart
every request ends exactly once with the outcome it would have had.
"""

from __future__ import annotations

import random
from typing import NamedTuple

import pytest

from flowdrop.daemon.testing import read_json
from tests.powerloss.powerworld import PowerWorld, Sampler
from tests.reliability.reliability_world import Drop, record

pytestmark = pytest.mark.powerloss

ANY = "/"  # for a rename LazyFS only checks to_rgx, as long as from_rgx cannot match "none"


class Point(NamedTuple):
    name: str
    op: str
    timing: str
    from_rgx: str
    to_rgx: str | None = None


POINTS = [
    Point("claim-rename-before", "rename", "before", ANY, r"/spool/work/[^/]+/r[0-9]+\.json$"),
    Point("claim-rename-after", "rename", "after", ANY, r"/spool/work/[^/]+/r[0-9]+\.json$"),
    Point("status-fsync-before", "fsync", "before", r"/outbox/\.tmp-[^/]+\.status\.json\."),
    Point("status-rename-after", "rename", "after", ANY, r"/outbox/[^/]+\.status\.json$"),
    Point("result-fsync-after", "fsync", "after", r"/outbox/\.tmp-[^/]+\.result\.json\."),
    Point("result-rename-before", "rename", "before", ANY, r"/outbox/[^/]+\.result\.json$"),
    Point("result-rename-after", "rename", "after", ANY, r"/outbox/[^/]+\.result\.json$"),
    Point("ledger-fsync-before", "fsync", "before", r"/ledger/\.tmp-"),
    Point("ledger-rename-after", "rename", "after", ANY, r"/state/ledger/[^/]+\.json$"),
    Point("done-rename-before", "rename", "before", ANY, r"/spool/done/"),
    Point("done-rename-after", "rename", "after", ANY, r"/spool/done/"),
    Point("run-fsync-before", "fsync", "before", r"/runs/\.tmp-[^/]+/"),
    Point("run-rename-before", "rename", "before", ANY, r"/runs/[^/.][^/]*$"),
    Point("run-rename-after", "rename", "after", ANY, r"/runs/[^/.][^/]*$"),
    Point("bundle-fsync-before", "fsync", "before", r"/telemetry/\.tmp-[^/]+/"),
    Point("bundle-rename-before", "rename", "before", ANY, r"/telemetry/[^/.][^/]*$"),
    Point("bundle-rename-after", "rename", "after", ANY, r"/telemetry/[^/.][^/]*$"),
    Point("quarantine-reason-rename-after", "rename", "after", ANY, r"\.reason\.json$"),
    Point("quarantine-rename-before", "rename", "before", ANY, r"/quarantine/r[0-9]+\.json$"),
    Point("quarantine-rename-after", "rename", "after", ANY, r"/quarantine/r[0-9]+\.json$"),
]

# What each point needs to be reached (besides a plain simulation that everything reaches).
NEEDS = {
    "bundle": ["telemetry, bundle generated"],
    "quarantine": ["rejected: invalid_json", "rejected: invalid_request"],
}


@pytest.mark.parametrize("point", POINTS, ids=[p.name for p in POINTS])
def test_lazyfs_crash_at(power_world: PowerWorld, point: Point) -> None:
    world = power_world
    fs = world.fs
    world.configure(workers=1)
    world.start()
    fs.arm_crash(point.op, point.timing, point.from_rgx, point.to_rgx)
    rng = random.Random(point.name)
    family = point.name.split("-", 1)[0]
    kinds = [*NEEDS.get(family, []), "simulation", "telemetry, bundle generated"]
    with Sampler(world):
        for kind in kinds:
            world.drop_kind(kind, rng)
        fired = fs.wait_crashed(timeout=30)
    assert fired, f"the crash at {point.name} never fired: the point is not reached"
    world.kill_daemons()
    fs.remount()
    world.after_cut(None, f"after a LazyFS crash at {point.name}")
    world.start()
    world.wait_settled(timeout=60)
    assert world.daemons[-1].stop() == 0
    world.final_check()
    world.sweep_check()
    record(
        "powerloss_crash_point",
        {
            "point": point.name,
            "requests": len(world.drops),
            "outcomes": dict(world.tally.outcomes),
            "debris_swept": world.tally.debris,
        },
    )


REPLACE_POINTS = [
    Point("bundle-replace-aside", "rename", "after", ANY, r"/telemetry/\.tmp-[^/]+\.old\.[^/]+$"),
    Point("run-replace-aside", "rename", "after", ANY, r"/runs/\.tmp-[^/]+\.old\.[^/]+$"),
]


@pytest.mark.parametrize("point", REPLACE_POINTS, ids=[p.name for p in REPLACE_POINTS])
def test_lazyfs_crash_while_replacing(power_world: PowerWorld, point: Point) -> None:
    """``forceCapture`` regenerates a bundle that exists and replays into a run that exists:
    both are replaced. A crash in the middle of a replacement must leave the old or the new
    bundle/run under its name, never none: the forced request, out of attempts after the crash,
    ends ``interrupted``, and the first request dropped again reuses the *old* bundle and run
    (a result that succeeded earlier names that run)."""
    world = power_world
    fs = world.fs
    world.configure(workers=1, max_attempts=1)
    world.start()
    rng = random.Random(point.name)
    first = world.drop_kind("telemetry, bundle generated", rng)
    world.wait_settled(timeout=60)
    key = f"k{first.request_id}"
    before = world.snapshot()
    assert key in before.bundles
    fs.arm_crash(point.op, point.timing, point.from_rgx, point.to_rgx)
    body = world.body("force1", "telemetry", telemetry={"captureDirectory": key})
    body["options"] = {"forceCapture": True}
    world.forced[key] += 1
    forced = Drop("force1.json", "force1", "done", "failed", "interrupted")
    with Sampler(world):
        world.submit(body, "force1.json", forced, "telemetry, forced regeneration")
        fired = fs.wait_crashed(timeout=30)
    assert fired, f"the crash at {point.name} never fired"
    world.kill_daemons()
    fs.remount()
    world.after_cut(before, f"after a LazyFS crash at {point.name}")
    again = world.body("again1", "telemetry", telemetry={"captureDirectory": key})
    world.submit(again, "again1.json", Drop("again1.json", "again1", "done", "succeeded"), "again")
    world.start()
    world.wait_settled(timeout=60)
    assert world.daemons[-1].stop() == 0
    world.final_check()
    result = read_json(world.outbox / "again1.result.json")
    assert result["capture"]["status"] == "reused", result["capture"]
    assert result["run"]["wasReused"] is True, result["run"]
    world.sweep_check()
