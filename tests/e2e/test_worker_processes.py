"""A daemon with worker processes: an operator's expensive template runs into request_timeout
while normal requests keep flowing; health.json shows the pool."""

from __future__ import annotations

import json
from pathlib import Path

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


def _drop(spool: Path, request_id: str, template_id: str) -> None:
    body = {"requestId": request_id, "templateId": template_id, "mode": "simulation"}
    drop_json(spool / "inbox", f"{request_id}.json", body)


def _result(spool: Path, request_id: str, timeout: float = 60) -> dict[str, object]:
    outbox = spool / "outbox"
    wait_until(lambda: terminal_status(outbox, request_id), timeout=timeout, message=request_id)
    return read_json(outbox / f"{request_id}.result.json")  # type: ignore[no-any-return]


def test_an_expensive_template_times_out_while_normal_requests_flow(tmp_path: Path) -> None:
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "slow.yaml").write_text(expensive_template("slow"))
    (templates / "mini.yaml").write_text(mini_template("mini", None))
    config = write_config(tmp_path, processor=None, workers=2, request_timeout=2)
    daemon = DaemonProcess(config)
    spool = tmp_path / "spool"
    try:
        daemon.wait_ready()
        _drop(spool, "slow", "slow")
        wait_until(
            lambda: (
                (read_json(spool / "outbox" / "slow.status.json") or {}).get("state") == "running"
            ),
            message="the slow request to run",
        )
        for index in range(5):
            _drop(spool, f"mini-{index}", "mini")
        normal = [_result(spool, f"mini-{index}") for index in range(5)]
        slow = _result(spool, "slow")
        _drop(spool, "after", "mini")
        after = _result(spool, "after")
        health = wait_until(
            lambda: (
                (h := json.loads((spool / "state" / "health.json").read_text()))["timeouts"] and h
            ),
            message="health.json to count the timeout",
        )
    finally:
        assert daemon.stop() == 0
    assert [r["state"] for r in normal] == ["succeeded"] * 5
    assert slow["state"] == "failed"
    assert slow["error"]["code"] == "timeout"  # type: ignore[index]
    assert after["state"] == "succeeded"
    published = [p.name for p in (tmp_path / "runs").iterdir() if not p.name.startswith(".")]
    assert not any(name.startswith("run_slow") for name in published)
    assert health["workerProcesses"] == 2
    assert health["workerProcessesReplaced"] >= 1
    assert health["timeouts"] == 1
