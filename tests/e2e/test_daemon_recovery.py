"""End to end: crashes (kill -9, failpoints), restart, dead-instance recovery, two instances."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from flowdrop.daemon.testing import (
    DaemonProcess,
    drop_json,
    executions,
    read_json,
    terminal_status,
    wait_until,
    write_config,
)


def _request(request_id: str, **params: object) -> dict[str, object]:
    return {"templateId": "t", "mode": "simulation", "requestId": request_id, "parameters": params}


def _running(outbox: Path, request_id: str) -> bool:
    return (read_json(outbox / f"{request_id}.status.json") or {}).get("state") == "running"


def test_kill_9_mid_request_then_restart_ends_exactly_once(tmp_path: Path) -> None:
    """SIGKILL while running: the restart resumes it; one terminal status, one result."""
    config = write_config(tmp_path, workers=1)
    spool = tmp_path / "spool"
    daemon = DaemonProcess(config)
    daemon.wait_ready()
    drop_json(spool / "inbox", "victim.json", _request("victim", sleep=0.6))
    wait_until(lambda: _running(spool / "outbox", "victim"), message="running")
    daemon.signal(signal.SIGKILL)
    daemon.kill()
    assert terminal_status(spool / "outbox", "victim") is None
    restarted = DaemonProcess(config)
    restarted.wait_ready()
    status = wait_until(lambda: terminal_status(spool / "outbox", "victim"), timeout=15)
    assert status["state"] == "succeeded"
    wait_until(lambda: (spool / "done" / "victim.json").exists(), message="done/")
    assert restarted.stop() == 0
    assert read_json(spool / "state" / "ledger" / "victim.json")["attempts"] == 2
    assert not list((spool / "work").glob("*/victim.json"))
    assert not (spool / "inbox" / "victim.json").exists()


@pytest.mark.parametrize(
    ("point", "runs"),
    [
        ("after_claim", 1),
        ("after_running_status", 1),
        ("result_before_rename", 2),
        ("after_result", 1),
        ("before_done_move", 1),
    ],
)
def test_crash_at_each_failpoint_recovers_to_one_outcome(
    tmp_path: Path, point: str, runs: int
) -> None:
    """Killed at a failpoint, then restarted: the request ends once, with the expected re-runs."""
    config = write_config(tmp_path, workers=1)
    spool = tmp_path / "spool"
    (spool / "inbox").mkdir(parents=True)
    drop_json(spool / "inbox", "fp.json", _request("fp"))
    crashing = DaemonProcess(config, env={"FLOWDROP_FAILPOINTS": f"{point}=kill"})
    assert crashing.proc.wait(timeout=20) == -signal.SIGKILL
    crashing.kill()
    restarted = DaemonProcess(config)
    restarted.wait_ready()
    status = wait_until(lambda: terminal_status(spool / "outbox", "fp"), timeout=15)
    wait_until(lambda: (spool / "done" / "fp.json").exists(), message="done/")
    assert restarted.stop() == 0
    assert status["state"] == "succeeded"
    # Only a crash after the processor ran but before its result was published re-runs it.
    assert executions(tmp_path / "runs", "fp") == runs
    assert read_json(spool / "outbox" / "fp.result.json")["state"] == "succeeded"


def test_gives_up_with_interrupted_after_max_attempts(tmp_path: Path) -> None:
    """A request that kills its runner every time ends failed/interrupted after max_attempts."""
    config = write_config(tmp_path, workers=1, max_attempts=2)
    spool = tmp_path / "spool"
    (spool / "inbox").mkdir(parents=True)
    drop_json(spool / "inbox", "doomed.json", _request("doomed"))
    for _ in range(2):
        crashing = DaemonProcess(config, env={"FLOWDROP_FAILPOINTS": "after_running_status=kill"})
        assert crashing.proc.wait(timeout=20) == -signal.SIGKILL
        crashing.kill()
    final = DaemonProcess(config)
    final.wait_ready()
    status = wait_until(lambda: terminal_status(spool / "outbox", "doomed"), timeout=15)
    assert final.stop() == 0
    assert status["state"] == "failed"
    error = read_json(spool / "outbox" / "doomed.result.json")["error"]
    assert error["code"] == "interrupted"
    assert error["message"] == (
        "The request was interrupted 2 times (daemon stopped or crashed while running it); "
        "giving up."
    )
    assert executions(tmp_path / "runs", "doomed") == 0


def test_live_instance_recovers_a_dead_instances_claimed_work(tmp_path: Path) -> None:
    """Instance A dies holding a claim; instance B (same spool) finds and finishes it."""
    config = write_config(tmp_path, workers=1, reconcile_interval=0.5)
    spool = tmp_path / "spool"
    survivor = DaemonProcess(config)
    survivor.wait_ready()
    (spool / "inbox").mkdir(parents=True, exist_ok=True)
    survivor.signal(signal.SIGSTOP)  # let A win the claim
    try:
        drop_json(spool / "inbox", "orphan.json", _request("orphan"))
        victim = DaemonProcess(config, env={"FLOWDROP_FAILPOINTS": "after_claim=kill"})
        assert victim.proc.wait(timeout=20) == -signal.SIGKILL
        victim.kill()
        assert list((spool / "work").glob("*/orphan.json"))
    finally:
        survivor.signal(signal.SIGCONT)
    status = wait_until(lambda: terminal_status(spool / "outbox", "orphan"), timeout=15)
    assert status["state"] == "succeeded"
    assert survivor.events("work_recovered")[0]["files"] == ["orphan.json"]
    assert survivor.stop() == 0
    assert executions(tmp_path / "runs", "orphan") == 1


def test_two_instances_on_one_spool_run_each_request_once(tmp_path: Path) -> None:
    """Two daemons share a spool: 30 requests, each runs exactly once, all succeed."""
    config = write_config(tmp_path, workers=2)
    first = DaemonProcess(config)
    second = DaemonProcess(config)
    first.wait_ready()
    second.wait_ready()
    spool = tmp_path / "spool"
    ids = [f"shared-{index}" for index in range(30)]
    for request_id in ids:
        drop_json(spool / "inbox", f"{request_id}.json", _request(request_id, sleep=0.02))
    # The same content dropped twice under other file names must not run twice either.
    for request_id in ids[:5]:
        drop_json(spool / "inbox", f"{request_id}-again.json", _request(request_id, sleep=0.02))
    for request_id in ids:
        status = wait_until(
            lambda rid=request_id: terminal_status(spool / "outbox", rid), timeout=30
        )
        assert status["state"] == "succeeded"
    wait_until(lambda: not list((spool / "inbox").iterdir()), message="inbox empty")
    assert first.stop() == 0
    assert second.stop() == 0
    assert [executions(tmp_path / "runs", rid) for rid in ids] == [1] * len(ids)
    instances = {read_json(spool / "outbox" / f"{rid}.status.json")["instance"] for rid in ids}
    assert len(instances) == 2  # both did work
