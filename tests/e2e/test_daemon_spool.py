"""End to end: a real ``flowdrop serve`` process on a tmp spool, driven only through files.

These tests use the counting processor (``flowdrop.daemon.testing``) so they exercise the spool
mechanics — drops, claims, rejections, idempotency — independently of the FlowTime engine.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
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


def _request(request_id: str | None = None, **extra: object) -> dict[str, object]:
    body: dict[str, object] = {"schemaVersion": 1, "templateId": "t", "mode": "simulation"}
    if request_id:
        body["requestId"] = request_id
    body.update(extra)
    return body


class World:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.spool = base / "spool"
        self.inbox = self.spool / "inbox"
        self.outbox = self.spool / "outbox"
        self.runs = base / "runs"

    def ended(self, request_id: str, timeout: float = 20.0) -> dict[str, object]:
        return wait_until(  # type: ignore[no-any-return]
            lambda: terminal_status(self.outbox, request_id),
            timeout=timeout,
            message=f"terminal status of {request_id}",
        )

    def result(self, request_id: str) -> dict[str, object]:
        return read_json(self.outbox / f"{request_id}.result.json")  # type: ignore[no-any-return]

    def reason(self, file_name: str) -> dict[str, object]:
        return wait_until(  # type: ignore[no-any-return]
            lambda: read_json(self.spool / "quarantine" / f"{file_name}.reason.json"),
            message=f"quarantine reason for {file_name}",
        )


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """One daemon shared by the tests of this module (each uses its own request ids)."""
    base = tmp_path_factory.mktemp("spool-e2e")
    (base / "spool" / "inbox").mkdir(parents=True)
    # Present before the daemon starts: must be processed by the startup scan.
    for index in range(3):
        drop_json(base / "spool" / "inbox", f"early-{index}.json", _request())
    config = write_config(base, workers=2, stale_after=1.5, max_request_bytes=4096)
    daemon = DaemonProcess(config)
    daemon.wait_ready()
    yield World(base)
    assert daemon.stop() == 0


def test_files_present_before_start_are_processed(world: World) -> None:
    """Requests dropped while the daemon was down are picked up by the startup scan."""
    for index in range(3):
        status = world.ended(f"early-{index}")
        assert status["state"] == "succeeded"
        assert executions(world.runs, f"early-{index}") == 1


def test_drop_by_rename_inside_inbox_succeeds(world: World) -> None:
    """tmp name → rename in the inbox: accepted, run once, result written, file in done/."""
    drop_json(world.inbox, "renamed.json", _request("by-rename"))
    status = world.ended("by-rename")
    assert status["state"] == "succeeded"
    assert status["message"] == "Run run_by-rename written."
    assert status["seq"] >= 4  # accepted, running, progress..., succeeded
    result = world.result("by-rename")
    assert result["state"] == "succeeded"
    assert result["run"]["runId"] == "run_by-rename"
    wait_until(lambda: (world.spool / "done" / "renamed.json").exists(), message="done/")
    assert not (world.inbox / "renamed.json").exists()
    assert executions(world.runs, "by-rename") == 1


def test_drop_by_move_from_sibling_dir_succeeds(world: World) -> None:
    """A file renamed in from another directory (a `created` event) is processed."""
    outside = world.base / "staging"
    outside.mkdir(exist_ok=True)
    source = outside / "moved-in.json"
    source.write_text(json.dumps(_request("moved-in")))
    os.rename(source, world.inbox / "moved-in.json")
    assert world.ended("moved-in")["state"] == "succeeded"


def test_slow_writer_in_place_runs_once_with_full_content(world: World) -> None:
    """A file written in place in chunks is not rejected while it grows; it runs once."""
    body = json.dumps(_request("slow-writer", parameters={"pad": "x" * 200}), indent=1)
    chunks = [body[i : i + 40] for i in range(0, len(body), 40)]
    path = world.inbox / "slow-writer.json"

    def write() -> None:
        with path.open("w") as handle:
            for chunk in chunks:
                handle.write(chunk)
                handle.flush()
                time.sleep(0.03)

    writer = threading.Thread(target=write)
    writer.start()
    writer.join()
    status = world.ended("slow-writer")
    assert status["state"] == "succeeded"
    assert executions(world.runs, "slow-writer") == 1
    assert not (world.spool / "quarantine" / "slow-writer.json").exists()


def test_incomplete_file_is_rejected_after_stale_after(world: World) -> None:
    """A writer that never finishes: the young file waits, then is rejected as invalid_json."""
    path = world.inbox / "abandoned.json"
    path.write_text('{"schemaVersion": 1, "templateId": "t"')
    started = time.monotonic()
    status = world.ended("abandoned", timeout=15)
    assert time.monotonic() - started >= 1.0  # it waited for stale_after (1.5 s) first
    assert status["state"] == "rejected"
    error = world.result("abandoned")["error"]
    assert error["code"] == "invalid_json"
    assert error["message"].startswith("Request is not valid JSON:")


@pytest.mark.parametrize(
    ("name", "raw", "code", "message"),
    [
        (
            "bad-json.json",
            b'{"templateId": "t", "mode": "simulation",}',
            "invalid_json",
            "Request is not valid JSON: Expecting property name enclosed in double quotes "
            "(line 1, column 42).",
        ),
        (
            "bad-request.json",
            b'{"templateId": "t"}',
            "invalid_request",
            "Invalid request: mode: Field required.",
        ),
        (
            "bad-version.json",
            b'{"schemaVersion": 2, "templateId": "t", "mode": "simulation"}',
            "unsupported_schema_version",
            "Unsupported schemaVersion 2; this flowdrop reads version 1.",
        ),
        (
            "too-big.json",
            b'{"templateId": "t", "mode": "simulation", "parameters": {"x": "'
            + b"y" * 5000
            + b'"}}',
            "request_too_large",
            "'too-big.json' is larger than max_request_bytes (5066 > 4096 bytes); it was not parsed.",
        ),
    ],
)
def test_rejections_write_status_result_and_quarantine(
    world: World, name: str, raw: bytes, code: str, message: str
) -> None:
    """Every rejection: rejected status + result with code and message, bytes kept in quarantine."""
    request_id = name.removesuffix(".json")
    drop_json(world.inbox, name, raw)
    status = world.ended(request_id)
    assert status["state"] == "rejected"
    assert status["message"] == f"{code}: {message}"
    result = world.result(request_id)
    assert result["state"] == "rejected"
    assert result["error"]["code"] == code
    assert result["error"]["message"] == message
    reason = world.reason(name)
    assert reason["error"]["code"] == code
    assert reason["fileName"] == name
    wait_until(lambda: (world.spool / "quarantine" / name).exists(), message="quarantined file")
    assert (world.spool / "quarantine" / name).read_bytes() == raw


def test_invalid_request_details_carry_pydantic_locations(world: World) -> None:
    """invalid_request details list each problem with its JSON location."""
    drop_json(world.inbox, "locs.json", {"templateId": "t", "mode": "sideways", "bogus": 1})
    world.ended("locs")
    details = world.result("locs")["error"]["details"]
    locations = {item["loc"]: item["type"] for item in details["errors"]}
    assert locations == {"mode": "enum", "bogus": "extra_forbidden"}


def test_symlink_is_quarantined_never_followed(world: World) -> None:
    """A symlink in the inbox is moved (as a link) to quarantine with path_violation."""
    secret = world.base / "secret.json"
    secret.write_text(json.dumps(_request("secret")))
    (world.inbox / "link.json").symlink_to(secret)
    reason = world.reason("link.json")
    assert reason["error"]["code"] == "path_violation"
    assert reason["error"]["message"] == (
        "'link.json' is a symbolic link, not a regular file; it was not followed or read."
    )
    wait_until(lambda: (world.spool / "quarantine" / "link.json").is_symlink(), message="link")
    assert secret.exists()
    assert terminal_status(world.outbox, "secret") is None


def test_fifo_is_quarantined_without_blocking(world: World) -> None:
    """A FIFO is never opened (it would block); it goes to quarantine."""
    os.mkfifo(world.inbox / "pipe.json")
    reason = world.reason("pipe.json")
    assert reason["error"]["code"] == "path_violation"
    assert "is a FIFO" in reason["error"]["message"]
    drop_json(world.inbox, "after-fifo.json", _request())
    assert world.ended("after-fifo")["state"] == "succeeded"


def test_file_name_that_is_no_request_id_is_quarantined(world: World) -> None:
    """Without a requestId field the stem must be a valid id; otherwise quarantine, no outbox."""
    drop_json(world.inbox, "bad name!.json", _request())
    reason = world.reason("bad name!.json")
    assert reason["error"]["code"] == "invalid_request"
    assert reason["error"]["message"].startswith(
        "The file name 'bad name!.json' is not a valid requestId"
    )


def test_same_id_same_content_does_not_run_twice(world: World) -> None:
    """A re-dropped identical request goes to done/ and leaves the first result untouched."""
    drop_json(world.inbox, "dup-a.json", _request("dup"))
    first = world.ended("dup")
    before = (world.outbox / "dup.result.json").read_bytes()
    drop_json(world.inbox, "dup-b.json", _request("dup"))
    wait_until(lambda: (world.spool / "done" / "dup-b.json").exists(), message="dup-b in done/")
    assert executions(world.runs, "dup") == 1
    assert (world.outbox / "dup.result.json").read_bytes() == before
    assert read_json(world.outbox / "dup.status.json")["seq"] == first["seq"]


def test_same_id_other_content_is_a_conflict(world: World) -> None:
    """Same requestId, other content → request_conflict in quarantine; first result untouched."""
    drop_json(world.inbox, "conf-a.json", _request("conf"))
    world.ended("conf")
    before = (world.outbox / "conf.result.json").read_bytes()
    drop_json(world.inbox, "conf-b.json", _request("conf", parameters={"other": 1}))
    reason = world.reason("conf-b.json")
    assert reason["error"]["code"] == "request_conflict"
    assert reason["error"]["message"] == (
        "requestId 'conf' was already used for a request with other content (state succeeded); "
        "use a new requestId."
    )
    assert (world.outbox / "conf.result.json").read_bytes() == before
    assert executions(world.runs, "conf") == 1


def test_processor_failures_and_bugs_end_failed(world: World) -> None:
    """A FlowdropError from the processor → failed with its code; a bug → internal_error."""
    drop_json(
        world.inbox, "fails.json", _request("fails", parameters={"fail": "template_not_found"})
    )
    drop_json(world.inbox, "bug.json", _request("bug", parameters={"crash": True}))
    assert world.ended("fails")["state"] == "failed"
    assert world.result("fails")["error"] == {
        "code": "template_not_found",
        "message": "Asked to fail with template_not_found.",
        "details": {},
    }
    assert world.ended("bug")["state"] == "failed"
    assert world.result("bug")["error"]["message"] == (
        "Internal error while running the request (RuntimeError); see the daemon log."
    )


def test_temp_names_are_ignored(world: World) -> None:
    """Names starting with '.' or ending in '.tmp' are never touched."""
    (world.inbox / ".hidden.json").write_text("{}")
    (world.inbox / "writing.json.tmp").write_text("{}")
    drop_json(world.inbox, "marker.json", _request())
    world.ended("marker")
    assert (world.inbox / ".hidden.json").exists()
    assert (world.inbox / "writing.json.tmp").exists()


def test_no_absolute_host_path_in_outbox(world: World) -> None:
    """No outbox file contains the tmp base path (all paths relative or placeholders)."""
    drop_json(world.inbox, "paths.json", _request("paths"))
    world.ended("paths")
    for path in world.outbox.iterdir():
        assert str(world.base) not in path.read_text(), path.name


def test_health_and_metrics_are_written(world: World) -> None:
    """state/health.json and state/metrics.prom report the instance's state."""
    health = wait_until(
        lambda: (
            (h := read_json(world.spool / "state" / "health.json"))
            and h["counters"].get("succeeded")
            and h
        ),
        message="health counters",
    )
    assert health["observerAlive"] is True
    assert health["healthy"] is True
    assert health["watchMode"] == "inotify"
    metrics = (world.spool / "state" / "metrics.prom").read_text()
    assert "# TYPE flowdrop_requests_total counter" in metrics
    assert 'flowdrop_observer_alive{instance="' in metrics


def test_burst_of_drops_loses_nothing(world: World) -> None:
    """150 files renamed in as fast as possible: every one ends, each ran once."""
    ids = [f"burst-{index}" for index in range(150)]
    for request_id in ids:
        drop_json(world.inbox, f"{request_id}.json", _request(request_id))
    for request_id in ids:
        assert world.ended(request_id, timeout=60)["state"] == "succeeded"
    assert sum(executions(world.runs, rid) for rid in ids) == len(ids)


def test_status_seq_only_grows_while_a_request_runs(world: World) -> None:
    """Sampled while running, the status file is always whole and its seq never goes back."""
    drop_json(world.inbox, "seq.json", _request("seq", parameters={"sleep": 0.3}))
    seen: list[int] = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            raw = (world.outbox / "seq.status.json").read_bytes()
        except FileNotFoundError:
            raw = None
        status = json.loads(raw) if raw is not None else None  # never a torn file
        if status is not None:
            seen.append(status["seq"])
            if status["state"] == "succeeded":
                break
        time.sleep(0.002)
    assert seen and seen == sorted(seen)
    assert seen[-1] >= 4
