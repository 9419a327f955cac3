from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from flowdrop.core.contract import (
    CaptureStatus,
    CaptureSummary,
    Mode,
    QuarantineReason,
    RunResult,
    RunSummary,
    State,
    StatusFile,
)
from flowdrop.core.errors import ErrorBody, ErrorCode
from flowdrop.daemon.cli import main
from flowdrop.daemon.spool import Spool
from flowdrop.daemon.statuspage import PAGE_NAME, StatusPageKeeper, collect, write_page
from flowdrop.daemon.testing import write_config

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def _status(spool: Spool, request_id: str, state: State, seconds: float = 2.0) -> None:
    status = StatusFile(
        request_id=request_id,
        state=state,
        message=f"{state.value} message",
        seq=3,
        accepted_at=T0,
        updated_at=T0 + timedelta(seconds=seconds),
        instance="test",
    )
    spool.status_path(request_id).write_bytes(status.to_json_bytes())


def _result(spool: Spool, result: RunResult) -> None:
    spool.result_path(result.request_id).write_bytes(result.to_json_bytes())


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    return populated_spool(tmp_path)


def populated_spool(tmp_path: Path) -> Spool:
    """A succeeded, a failed and a running request, and a quarantined file."""
    spool = Spool(tmp_path / "spool", "test")
    spool.ensure()
    _status(spool, "ok-1", State.SUCCEEDED)
    run = RunSummary(
        run_id="run_x",
        mode=Mode.TELEMETRY,
        template_id="t",
        template_version="1",
        was_reused=False,
        path="run_x",
    )
    capture = CaptureSummary(status=CaptureStatus.GENERATED, reason="Bundle was missing.")
    _result(spool, RunResult(request_id="ok-1", state=State.SUCCEEDED, run=run, capture=capture))
    _status(spool, "bad-1", State.FAILED, seconds=3)
    error = ErrorBody(code=ErrorCode.STOCHASTIC_TEMPLATE, message="needs rng.seed")
    _result(spool, RunResult(request_id="bad-1", state=State.FAILED, error=error))
    _status(spool, "busy-1", State.RUNNING, seconds=1)
    reason = QuarantineReason(
        file_name="junk.json",
        quarantined_at=T0,
        instance="test",
        error=ErrorBody(code=ErrorCode.INVALID_JSON, message="not JSON"),
    )
    (spool.quarantine / "junk.json.reason.json").write_bytes(reason.to_json_bytes())
    return spool


def test_rows_carry_state_capture_duration_and_errors_with_their_code(spool: Spool) -> None:
    rows = {row.request_id: row for row in collect(spool, None)}
    assert set(rows) == {"ok-1", "bad-1", "busy-1", "junk.json"}
    assert (rows["ok-1"].capture, rows["ok-1"].capture_reason) == (
        "generated",
        "Bundle was missing.",
    )
    assert rows["ok-1"].duration == "2.0 s" and not rows["ok-1"].alert
    assert rows["bad-1"].alert and rows["bad-1"].code == "stochastic_template"
    assert rows["bad-1"].message == "needs rng.seed"
    assert rows["junk.json"].state == "rejected" and rows["junk.json"].code == "invalid_json"
    assert rows["busy-1"].state == "running" and rows["busy-1"].result is None


def test_the_page_reloads_itself_and_failed_rows_stand_out(spool: Spool, tmp_path: Path) -> None:
    page = write_page(spool, None, tmp_path / "status.html")
    text = page.read_text(encoding="utf-8")
    assert '<meta http-equiv="refresh"' in text
    assert text.count('<tr class="alert">') == 2  # the failed request and the quarantined file
    assert "<strong>stochastic_template</strong>: needs rng.seed" in text
    assert 'href="spool/outbox/ok-1.result.json"' in text
    assert 'href="spool/quarantine/junk.json.reason.json">reason</a>' in text
    assert str(tmp_path) not in text  # no absolute host path (the page may be in the outbox)


def test_the_keeper_rewrites_only_when_the_outbox_changed_or_the_page_is_old(
    spool: Spool,
) -> None:
    keeper = StatusPageKeeper(spool, None, max_age=10.0)
    assert keeper.tick(100.0) and (spool.outbox / PAGE_NAME).is_file()
    assert not keeper.tick(101.0)  # its own write does not count as a change
    _status(spool, "new-1", State.ACCEPTED)
    # Directory timestamps are coarse (a few ms): make the change visible however fast we are.
    mtime = spool.outbox.stat().st_mtime_ns + 10_000_000
    os.utime(spool.outbox, ns=(mtime, mtime))
    assert keeper.tick(102.0)
    assert "new-1" in (spool.outbox / PAGE_NAME).read_text(encoding="utf-8")
    assert not keeper.tick(103.0)
    assert keeper.tick(112.5)  # old enough: durations of running requests move
    assert keeper.writes == 3


def test_a_status_written_while_the_page_is_made_shows_on_the_next_tick(
    spool: Spool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request that ends between the page's own rename and the keeper's next look is not
    taken for that rename (the keeper once read the outbox's mtime after its write, and such a
    request stayed off the page for max_age: a flaky daemon test found it)."""
    from flowdrop.daemon import statuspage

    real_write = statuspage.write_page

    def write_then_a_request_ends(*args: object) -> Path:
        page = real_write(*args)  # type: ignore[arg-type]
        if not spool.status_path("late-1").exists():
            _status(spool, "late-1", State.SUCCEEDED)
        return page

    monkeypatch.setattr(statuspage, "write_page", write_then_a_request_ends)
    keeper = StatusPageKeeper(spool, None, max_age=10.0)
    assert keeper.tick(100.0)
    assert "late-1" not in (spool.outbox / PAGE_NAME).read_text(encoding="utf-8")
    assert keeper.tick(101.0)
    assert "late-1" in (spool.outbox / PAGE_NAME).read_text(encoding="utf-8")
    assert not keeper.tick(102.0)


def test_status_html_writes_the_page_from_the_cli(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    page = tmp_path / "overview.html"
    assert main(["status", "--config", str(config), "--html", str(page)]) == 0
    assert "no requests yet" in page.read_text(encoding="utf-8")
    assert main(["status", "--config", str(config), "--watch"]) == 2


def test_the_keeper_starts_and_stops_as_the_configuration_says(spool: Spool) -> None:
    keeper = StatusPageKeeper(spool, None, interval=0.05)
    keeper.apply(False)
    assert not keeper.running and keeper.writes == 0
    keeper.apply(True)
    assert keeper.running and keeper.writes == 1
    keeper.apply(True)  # already running: nothing changes
    keeper.apply(False)
    assert not keeper.running
    keeper.apply(True)  # a reload turning it on again writes at once
    assert keeper.writes == 2
    keeper.stop()
