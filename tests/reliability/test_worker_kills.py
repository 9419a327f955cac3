"""Worker processes killed under a running daemon (SIGKILL, as the OOM killer would): each is
replaced, and its request is resumed under the attempt rules — retried to success, or
``interrupted`` once ``max_attempts`` attempts were counted. Exactly one result either way."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from flowdrop.daemon.testing import (
    DaemonProcess,
    drop_json,
    expensive_template,
    mini_template,
    read_json,
    terminal_status,
    wait_until,
    write_config,
)


def _children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry))
    return out


def _worker_pids(daemon_pid: int) -> list[int]:
    """Worker processes are the children of the daemon's forkserver child."""
    return [w for server in _children(daemon_pid) for w in _children(server)]


def _run_and_kill(tmp_path: Path, max_attempts: int) -> tuple[dict[str, object], DaemonProcess]:
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "slow.yaml").write_text(expensive_template("slow", nodes=30, taps=6000))
    (templates / "mini.yaml").write_text(mini_template("mini", None))
    config = write_config(
        tmp_path, processor=None, workers=2, max_attempts=max_attempts, reconcile_interval=1
    )
    daemon = DaemonProcess(config)
    spool = tmp_path / "spool"
    outbox = spool / "outbox"
    try:
        daemon.wait_ready()
        wait_until(lambda: len(_worker_pids(daemon.pid)) == 2, message="two worker processes")
        body = {"requestId": "slow", "templateId": "slow", "mode": "simulation"}
        drop_json(spool / "inbox", "slow.json", body)
        wait_until(
            lambda: (read_json(outbox / "slow.status.json") or {}).get("phase") == "simulating",
            message="the slow request to simulate",
        )
        victims = _worker_pids(daemon.pid)
        for pid in victims:
            os.kill(pid, signal.SIGKILL)
        result = wait_until(
            lambda: terminal_status(outbox, "slow") and read_json(outbox / "slow.result.json"),
            timeout=90,
            message="the slow request to end",
        )
        mini = {"requestId": "mini", "templateId": "mini", "mode": "simulation"}
        drop_json(spool / "inbox", "mini.json", mini)
        wait_until(lambda: terminal_status(outbox, "mini"), timeout=30, message="mini")
        assert read_json(outbox / "mini.result.json")["state"] == "succeeded"
        wait_until(
            lambda: (
                json.loads((spool / "state" / "health.json").read_text())["workerProcessesReplaced"]
                >= 1
            ),
            message="health.json to count the replacement",
        )
        assert not set(victims) & set(_worker_pids(daemon.pid))
        wait_until(lambda: len(list((spool / "done").iterdir())) == 2, message="both in done/")
    finally:
        assert daemon.stop() == 0
    return result, daemon


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc")
def test_a_killed_worker_process_is_replaced_and_its_request_retried(tmp_path: Path) -> None:
    result, daemon = _run_and_kill(tmp_path, max_attempts=3)
    assert result["state"] == "succeeded", result
    finished = [e for e in daemon.events("request_finished") if e.get("requestId") == "slow"]
    assert [e["attempts"] for e in finished] == [2]


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc")
def test_a_killed_worker_process_at_the_last_attempt_ends_interrupted(tmp_path: Path) -> None:
    result, _ = _run_and_kill(tmp_path, max_attempts=1)
    assert result["state"] == "failed"
    assert result["error"]["code"] == "interrupted"  # type: ignore[index]


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc")
def test_worker_processes_die_with_a_killed_daemon(tmp_path: Path) -> None:
    """A SIGKILLed daemon leaves no worker process behind to go on writing runs."""
    (tmp_path / "templates").mkdir()
    daemon = DaemonProcess(write_config(tmp_path, processor=None, workers=2))
    daemon.wait_ready()
    wait_until(lambda: len(_worker_pids(daemon.pid)) == 2, message="two worker processes")
    workers = _worker_pids(daemon.pid)
    daemon.kill()
    wait_until(
        lambda: not any(Path(f"/proc/{pid}").exists() for pid in workers),
        timeout=10,
        message="the worker processes to exit",
    )
