"""The run guard: a running request holds its template's runs; a prune cannot rename them."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from flowdrop.daemon.runguard import guard_path, runs_in_use, try_exclusive
from flowdrop.daemon.spool import Spool
from flowdrop.daemon.testing import (
    DaemonProcess,
    drop_json,
    read_json,
    terminal_status,
    wait_until,
    write_config,
)


def _spool(tmp_path: Path) -> Spool:
    spool = Spool(tmp_path / "spool", "test")
    spool.ensure(own_work=False)
    return spool


def test_a_running_request_keeps_a_prune_off_its_templates_runs_only(tmp_path: Path) -> None:
    spool = _spool(tmp_path)
    with runs_in_use(spool, "orders"), runs_in_use(spool, "orders"):  # workers share it
        with try_exclusive(spool, "orders") as held:
            assert not held
        with try_exclusive(spool, "billing") as held:
            assert held
    with try_exclusive(spool, "orders") as held:
        assert held


def test_a_request_starting_during_a_prunes_rename_waits_for_it(tmp_path: Path) -> None:
    spool = _spool(tmp_path)
    entered = threading.Event()

    def request() -> None:
        with runs_in_use(spool, "orders"):
            entered.set()

    with try_exclusive(spool, "orders") as held:
        assert held
        worker = threading.Thread(target=request)
        worker.start()
        assert not entered.wait(0.2)
    assert entered.wait(5)
    worker.join()


def test_guard_files_are_named_by_a_digest_inside_the_locks_dir(tmp_path: Path) -> None:
    """Any templateId (slashes, dots, 256 characters) maps to one safe file name."""
    spool = _spool(tmp_path)
    path = guard_path(spool, "../../etc/" + "x" * 250)
    assert path.parent == spool.locks
    assert path.name.startswith("runs-") and len(path.name) == len("runs-") + 24 + len(".lock")
    assert guard_path(spool, "a") != guard_path(spool, "b")


def test_the_daemon_holds_the_guard_while_a_request_runs(tmp_path: Path) -> None:
    """A real daemon (counting processor, a 1.5 s request): guard busy while running, then free."""
    config = write_config(tmp_path)
    spool = Spool(tmp_path / "spool", "test")
    daemon = DaemonProcess(config)
    try:
        daemon.wait_ready()
        body = {
            "schemaVersion": 1,
            "requestId": "slow",
            "templateId": "orders",
            "mode": "simulation",
            "parameters": {"sleep": 1.5},
        }
        drop_json(spool.inbox, "slow.json", body)
        wait_until(
            lambda: (read_json(spool.status_path("slow")) or {}).get("phase") == "simulating",
            message="slow to run",
        )
        with try_exclusive(spool, "orders") as held:
            assert not held
        status = wait_until(lambda: terminal_status(spool.outbox, "slow"), message="slow to end")
        assert status["state"] == "succeeded", json.dumps(status)
        time.sleep(0.05)
        with try_exclusive(spool, "orders") as held:
            assert held
    finally:
        assert daemon.stop() == 0
