"""End to end: signals (SIGTERM drain, SIGHUP reload), sd_notify on a real socket, --detach."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

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


class NotifySocket:
    """An AF_UNIX datagram socket standing in for systemd's notify socket."""

    def __init__(self, address: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        bind_to = "\0" + address[1:] if address.startswith("@") else address
        self.sock.bind(bind_to)
        self.sock.settimeout(0.05)
        self.address = address
        self.messages: list[str] = []

    def poll(self) -> list[str]:
        while True:
            try:
                data = self.sock.recv(4096)
            except (TimeoutError, BlockingIOError):
                return self.messages
            self.messages.append(data.decode())

    def lines(self) -> list[str]:
        return [line for message in self.poll() for line in message.splitlines()]

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[NotifySocket]:
    sock = NotifySocket(str(tmp_path / "notify.sock"))
    yield sock
    sock.close()


def test_sigterm_drains_running_requests_then_exits_zero(tmp_path: Path) -> None:
    """SIGTERM stops claiming, lets the running request finish, and exits 0."""
    config = write_config(tmp_path, workers=1)
    daemon = DaemonProcess(config)
    daemon.wait_ready()
    inbox = tmp_path / "spool" / "inbox"
    outbox = tmp_path / "spool" / "outbox"
    drop_json(inbox, "long.json", _request("long", sleep=1.0))
    wait_until(lambda: (read_json(outbox / "long.status.json") or {}).get("state") == "running")
    daemon.signal(signal.SIGTERM)
    drop_json(inbox, "late.json", _request("late"))
    assert daemon.stop() == 0
    assert terminal_status(outbox, "long")["state"] == "succeeded"
    assert (inbox / "late.json").exists()  # not claimed after SIGTERM
    assert daemon.events("daemon_stopping")
    assert daemon.events("daemon_stopped")[0]["drained"] is True


def test_drain_timeout_leaves_work_for_recovery_which_resumes_it(tmp_path: Path) -> None:
    """A request outliving drain_timeout stays claimed and is resumed by the next start."""
    config = write_config(tmp_path, workers=1, drain_timeout=0.3)
    daemon = DaemonProcess(config)
    daemon.wait_ready()
    spool = tmp_path / "spool"
    drop_json(spool / "inbox", "slow.json", _request("slow", sleep=3))
    wait_until(
        lambda: (read_json(spool / "outbox" / "slow.status.json") or {}).get("state") == "running"
    )
    assert daemon.stop() == 0
    status = read_json(spool / "outbox" / "slow.status.json")
    assert status["state"] == "running"
    assert status["message"].startswith("Interrupted: the daemon stopped")
    assert list((spool / "work").glob("*/slow.json"))
    # Patch the config so the resumed attempt is quick: content is what counts, not params.
    restarted = DaemonProcess(config)
    restarted.wait_ready()
    status = wait_until(lambda: terminal_status(spool / "outbox", "slow"), timeout=15)
    assert status["state"] == "succeeded"
    assert restarted.events("request_resumed")[0]["attempt"] == 2
    assert restarted.stop() == 0
    assert executions(tmp_path / "runs", "slow") == 2


def test_sighup_applies_a_valid_config_and_keeps_the_old_on_an_invalid_one(
    tmp_path: Path, notify_socket: NotifySocket
) -> None:
    """SIGHUP: a valid file is applied (RELOADING/READY); an invalid one is logged and ignored."""
    config = write_config(tmp_path, workers=1)
    daemon = DaemonProcess(config, env={"NOTIFY_SOCKET": notify_socket.address})
    daemon.wait_ready()
    data = yaml.safe_load(config.read_text())
    data["workers"] = 3
    config.write_text(yaml.safe_dump(data))
    daemon.signal(signal.SIGHUP)
    reloaded = wait_until(lambda: daemon.events("config_reloaded"), message="config_reloaded")
    assert reloaded[0]["workers"] == 3

    def reload_then_ready() -> list[str] | None:
        lines = notify_socket.lines()
        if "RELOADING=1" not in lines:
            return None
        return lines if "READY=1" in lines[lines.index("RELOADING=1") :] else None

    lines = wait_until(reload_then_ready, message="RELOADING then READY")
    index = lines.index("RELOADING=1")
    assert lines[index + 1].startswith("MONOTONIC_USEC=")

    config.write_text("workers: [not, a, number]\nbogus_key: 1\n")
    daemon.signal(signal.SIGHUP)
    rejected = wait_until(lambda: daemon.events("config_reload_rejected"), message="rejection")
    assert rejected[0]["problems"] == [
        "workers: Input should be a valid integer",
        "bogus_key: unknown key",
    ]
    drop_json(tmp_path / "spool" / "inbox", "still.json", _request("still"))
    status = wait_until(lambda: terminal_status(tmp_path / "spool" / "outbox", "still"))
    assert status["state"] == "succeeded"
    assert daemon.stop() == 0


@pytest.mark.parametrize("abstract", [False, True])
def test_sd_notify_ready_status_watchdog_stopping(tmp_path: Path, abstract: bool) -> None:
    """READY=1 after the first scan, STATUS=, WATCHDOG=1 pings, STOPPING=1 on SIGTERM."""
    address = (
        f"@flowdrop-test-{os.getpid()}-{tmp_path.name}" if abstract else str(tmp_path / "n.sock")
    )
    sock = NotifySocket(address)
    try:
        (tmp_path / "spool" / "inbox").mkdir(parents=True)
        drop_json(tmp_path / "spool" / "inbox", "pre.json", _request("pre"))
        config = write_config(tmp_path)
        daemon = DaemonProcess(config, env={"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "400000"})
        daemon.wait_ready()
        wait_until(lambda: sock.lines().count("WATCHDOG=1") >= 3, message="3 watchdog pings")
        assert daemon.stop() == 0
        lines = sock.lines()
        assert "READY=1" in lines
        assert any(line.startswith("STATUS=") and "queue" in line for line in lines)
        assert lines.index("READY=1") < lines.index("WATCHDOG=1")
        assert "STOPPING=1" in lines
        assert lines.index("STOPPING=1") > lines.index("READY=1")
    finally:
        sock.close()


def test_serve_once_drains_the_inbox_and_exits(tmp_path: Path) -> None:
    """--once processes what is in the inbox and exits 0."""
    (tmp_path / "spool" / "inbox").mkdir(parents=True)
    for index in range(4):
        drop_json(tmp_path / "spool" / "inbox", f"o{index}.json", _request(f"o{index}"))
    config = write_config(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "flowdrop.daemon.cli", "serve", "--config", str(config), "--once"],
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    for index in range(4):
        assert terminal_status(tmp_path / "spool" / "outbox", f"o{index}")["state"] == "succeeded"


def test_start_removes_old_crash_debris_and_keeps_young_temporaries(tmp_path: Path) -> None:
    """Temporaries a SIGKILL left mid-write are swept at start once older than temp_max_age."""
    outbox = tmp_path / "spool" / "outbox"
    runs = tmp_path / "runs"
    outbox.mkdir(parents=True)
    runs.mkdir()
    old_status = outbox / ".tmp-r1.status.json.0123456789ab"
    old_status.write_text('{"half": ')
    old_staging = runs / ".tmp-run_x.0123456789ab"
    old_staging.mkdir()
    (old_staging / "run.json").write_text("{")
    young = outbox / ".tmp-r2.result.json.0123456789ab"
    young.write_text("{")
    hour_ago = time.time() - 7200
    for path in (old_status, old_staging):
        os.utime(path, (hour_ago, hour_ago))
    config = write_config(tmp_path, temp_max_age=3600)
    done = subprocess.run(
        [sys.executable, "-m", "flowdrop.daemon.cli", "serve", "--config", str(config), "--once"],
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert not old_status.exists()
    assert not old_staging.exists()
    assert young.exists()
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith(b"{")]
    swept = [e for e in events if e.get("event") == "temp_debris_removed"]
    assert {e["directory"] for e in swept} == {"outbox", "runs"}


def test_detach_writes_pidfile_and_stops_on_sigterm(tmp_path: Path) -> None:
    """--detach --pidfile: the parent returns, the pidfile appears once the daemon is ready (the
    spool exists, health.json is written), the daemon runs, SIGTERM removes the pidfile."""
    config = write_config(tmp_path)
    pidfile = tmp_path / "flowdrop.pid"
    launched = subprocess.run(
        [
            sys.executable,
            "-m",
            "flowdrop.daemon.cli",
            "serve",
            "--config",
            str(config),
            "--detach",
            "--pidfile",
            str(pidfile),
        ],
        capture_output=True,
        timeout=30,
    )
    assert launched.returncode == 0, launched.stderr
    pid = int(
        wait_until(lambda: pidfile.exists() and pidfile.read_text().strip(), message="pidfile")
    )
    try:
        # The pidfile is written at detach, before the daemon has made its spool: wait for it.
        wait_until((tmp_path / "spool" / "inbox").is_dir, timeout=30, message="inbox")
        drop_json(tmp_path / "spool" / "inbox", "detached.json", _request("detached"))
        status = wait_until(
            lambda: terminal_status(tmp_path / "spool" / "outbox", "detached"), timeout=30
        )
        assert status["state"] == "succeeded"
    finally:
        os.kill(pid, signal.SIGTERM)
    wait_until(lambda: not pidfile.exists(), timeout=30, message="pidfile removed")
    assert "daemon_stopped" in (tmp_path / "spool" / "state" / "flowdrop.log").read_text()


def test_config_error_exits_2_with_one_line_per_bad_key(tmp_path: Path) -> None:
    """serve with a bad config: exit 2, message names every bad key, no traceback."""
    config = tmp_path / "bad.yaml"
    config.write_text("workers: 0\nreconcile_interval: soon\nspool: /x\nruns_root: /x/runs\n")
    done = subprocess.run(
        [sys.executable, "-m", "flowdrop.daemon.cli", "serve", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert f"config_invalid: the configuration ({config}) is not valid:" in done.stderr
    assert "  - workers: Input should be greater than or equal to 1" in done.stderr
    assert "  - reconcile_interval: Input should be a valid number" in done.stderr
