"""Claim by rename: temp names ignored, young incomplete files wait, one winner per file."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from flowdrop.daemon.claim import Decision, claim, list_inbox, recover_dead_instances
from flowdrop.daemon.spool import InstanceLock, Spool


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    spool = Spool(tmp_path / "spool", "me")
    spool.ensure()
    return spool


def _claim(spool: Spool, name: str, **kw: float) -> Decision:
    return claim(spool, name, max_bytes=1024, stale_after=kw.get("stale_after", 5.0)).decision


def test_complete_file_is_claimed_into_work(spool: Spool) -> None:
    """A complete request is renamed into work/<instance>/."""
    (spool.inbox / "a.json").write_text('{"templateId": "t", "mode": "simulation"}')
    outcome = claim(spool, "a.json", max_bytes=1024, stale_after=5)
    assert outcome.decision is Decision.CLAIMED
    assert outcome.path == spool.work / "a.json"
    assert not (spool.inbox / "a.json").exists()


def test_temp_and_non_json_names_are_ignored(spool: Spool) -> None:
    """'.x.json', 'x.json.tmp' and 'x.txt' are never claimed."""
    for name in (".x.json", "x.json.tmp", "x.txt"):
        (spool.inbox / name).write_text("{}")
        assert _claim(spool, name) is Decision.IGNORED
    assert list_inbox(spool) == []


def test_young_incomplete_file_waits_and_old_one_is_claimed(spool: Spool) -> None:
    """Unparseable and young → deferred; the same bytes older than stale_after → claimed."""
    path = spool.inbox / "partial.json"
    path.write_text('{"templateId": ')
    assert _claim(spool, "partial.json") is Decision.DEFERRED
    old = time.time() - 60
    os.utime(path, (old, old))
    assert _claim(spool, "partial.json") is Decision.CLAIMED


def test_young_but_complete_invalid_request_is_claimed(spool: Spool) -> None:
    """Valid JSON that is not a valid request is final: no waiting."""
    (spool.inbox / "r.json").write_text('{"templateId": 1}')
    assert _claim(spool, "r.json") is Decision.CLAIMED


def test_vanished_file_is_gone(spool: Spool) -> None:
    """A file another instance claimed first reports GONE."""
    assert _claim(spool, "nobody.json") is Decision.GONE


def test_symlink_is_claimed_as_a_link_not_followed(spool: Spool, tmp_path: Path) -> None:
    """The rename moves the link itself; the target is untouched."""
    target = tmp_path / "target.json"
    target.write_text("{}")
    (spool.inbox / "l.json").symlink_to(target)
    assert _claim(spool, "l.json") is Decision.CLAIMED
    assert (spool.work / "l.json").is_symlink()
    assert target.exists()


def test_concurrent_claims_have_exactly_one_winner(tmp_path: Path) -> None:
    """Eight claimers (eight instances) race for one file: one CLAIMED, the rest GONE."""
    spools = [Spool(tmp_path / "spool", f"i{n}") for n in range(8)]
    for spool in spools:
        spool.ensure()
    (spools[0].inbox / "race.json").write_text('{"templateId": "t", "mode": "simulation"}')
    results: list[Decision] = []
    barrier = threading.Barrier(len(spools))

    def go(spool: Spool) -> None:
        barrier.wait()
        results.append(_claim(spool, "race.json"))

    threads = [threading.Thread(target=go, args=(s,)) for s in spools]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(r.value for r in results) == ["claimed"] + ["gone"] * 7


def test_dead_instance_work_is_moved_to_the_live_one(tmp_path: Path) -> None:
    """Work of an instance whose lock is free moves to us; a live instance's stays."""
    me = Spool(tmp_path / "spool", "me")
    dead = Spool(tmp_path / "spool", "dead")
    alive = Spool(tmp_path / "spool", "alive")
    for spool in (me, dead, alive):
        spool.ensure()
    (dead.work / "x.json").write_text("{}")
    (alive.work / "y.json").write_text("{}")
    lock = InstanceLock(alive)
    assert lock.acquire()
    try:
        moved = recover_dead_instances(me)
    finally:
        lock.release()
    assert moved == [me.work / "x.json"]
    assert not dead.work.exists()
    assert (alive.work / "y.json").exists()


def test_claim_recreates_a_vanished_work_dir(spool: Spool) -> None:
    """If work/<instance>/ disappeared, the claim recreates it instead of failing forever."""
    spool.work.rmdir()
    (spool.inbox / "a.json").write_text('{"templateId": "t", "mode": "simulation"}')
    assert _claim(spool, "a.json") is Decision.CLAIMED
    assert (spool.work / "a.json").exists()
