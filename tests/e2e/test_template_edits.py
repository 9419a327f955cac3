"""A template edited under a running daemon is used by the very next request (caches follow)."""

from __future__ import annotations

from pathlib import Path

from flowdrop.daemon.testing import (
    DaemonProcess,
    drop_json,
    mini_template,
    read_json,
    terminal_status,
    wait_until,
    write_config,
)


def _run(spool: Path, request_id: str) -> dict[str, object]:
    body = {"requestId": request_id, "templateId": "mini-edit", "mode": "simulation"}
    drop_json(spool / "inbox", f"{request_id}.json", body)
    outbox = spool / "outbox"
    wait_until(lambda: terminal_status(outbox, request_id), timeout=30, message=request_id)
    return read_json(outbox / f"{request_id}.result.json")  # type: ignore[no-any-return]


def test_an_edited_template_is_picked_up_by_the_next_request(tmp_path: Path) -> None:
    templates = tmp_path / "templates"
    templates.mkdir()
    path = templates / "edit.yaml"
    path.write_text(mini_template("mini-edit", None))
    daemon = DaemonProcess(write_config(tmp_path, processor=None, workers=1))
    try:
        daemon.wait_ready()
        first = _run(tmp_path / "spool", "before-edit")
        again = _run(tmp_path / "spool", "same-again")
        # Same bytes, same size: only the version changes (1.0.0 -> 2.0.0).
        path.write_text(mini_template("mini-edit", None).replace("1.0.0", "2.0.0"))
        edited = _run(tmp_path / "spool", "after-edit")
        broken = path.read_text().replace("default: 4", "default: 0")  # no bins: invalid
        path.write_text(broken)
        failed = _run(tmp_path / "spool", "after-break")
    finally:
        assert daemon.stop() == 0
    assert first["run"]["templateVersion"] == "1.0.0"  # type: ignore[index]
    assert again["run"]["wasReused"] is True  # type: ignore[index]
    assert edited["run"]["templateVersion"] == "2.0.0"  # type: ignore[index]
    assert edited["run"]["wasReused"] is False  # type: ignore[index]
    assert failed["state"] == "failed"
    assert failed["error"]["code"] == "template_invalid"  # type: ignore[index]
