"""RequestHandler in-process: the status sequence, rejections, duplicates, resume rules."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from flowdrop.core.contract import Phase, RunRequest, RunResult, RunSummary, State
from flowdrop.daemon.ledger import Entry, Ledger
from flowdrop.daemon.process import Limits, RequestHandler
from flowdrop.daemon.processor import ProgressCallback
from flowdrop.daemon.spool import Scrubber, Spool
from tests.failpointing import armed

REQUEST = {"templateId": "t", "mode": "simulation", "requestId": "r1"}


class Recorder:
    def __init__(self, spool: Spool) -> None:
        self.calls = 0
        self.spool = spool
        self.seen_states: list[str] = []

    def __call__(
        self, request: RunRequest, request_id: str, progress: ProgressCallback
    ) -> RunResult:
        self.calls += 1
        progress(Phase.SIMULATING, f"Simulating in {self.spool.root}/x")
        status = json.loads(self.spool.status_path(request_id).read_text())
        self.seen_states.append(f"{status['state']}/{status['phase']}")
        return RunResult(
            request_id=request_id,
            state=State.SUCCEEDED,
            run=RunSummary(
                run_id="run1",
                mode=request.mode,
                template_id=request.template_id,
                template_version="1",
                was_reused=False,
                path="run1",
            ),
        )


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    spool = Spool(tmp_path / "spool", "me")
    spool.ensure()
    return spool


def _handler(spool: Spool, processor: Recorder, attempts: int = 3) -> RequestHandler:
    scrub = Scrubber({"spool": spool.root})
    return RequestHandler(spool, processor, Limits(4096, attempts), scrub=scrub)


def _claimed(spool: Spool, name: str, body: object) -> Path:
    path = spool.work / name
    path.write_text(json.dumps(body) if not isinstance(body, str) else body)
    return path


def test_success_walks_accepted_running_succeeded_and_files_away(spool: Spool) -> None:
    """accepted(1) → running/validating → running/simulating → succeeded; file in done/."""
    recorder = Recorder(spool)
    assert _handler(spool, recorder).handle(_claimed(spool, "a.json", REQUEST)) == "succeeded"
    assert recorder.seen_states == ["running/simulating"]
    status = json.loads(spool.status_path("r1").read_text())
    assert (status["state"], status["seq"], status["message"]) == (
        "succeeded",
        4,
        "Run run1 written.",
    )
    assert (spool.done / "a.json").exists()
    assert Ledger(spool).get("r1").state == "succeeded"  # type: ignore[union-attr]


def test_progress_messages_never_leak_absolute_paths(spool: Spool) -> None:
    """A root path in a progress message is replaced by its placeholder."""
    recorder = Recorder(spool)

    def spy(request: RunRequest, request_id: str, progress: ProgressCallback) -> RunResult:
        result = recorder(request, request_id, progress)
        text = spool.status_path(request_id).read_text()
        assert str(spool.root) not in text
        assert "Simulating in <spool>/x" in text
        return result

    handler = RequestHandler(spool, spy, Limits(4096, 3), scrub=Scrubber({"spool": spool.root}))
    handler.handle(_claimed(spool, "a.json", REQUEST))


def test_resume_uses_an_already_written_result_without_rerunning(spool: Spool) -> None:
    """Crash after the result: resuming completes the bookkeeping only."""
    recorder = Recorder(spool)
    handler = _handler(spool, recorder)
    handler.handle(_claimed(spool, "a.json", REQUEST))
    raw = json.dumps(REQUEST).encode()
    from flowdrop.daemon.ledger import content_hash

    # Pretend the ledger was not updated before a crash.
    Ledger(spool).put(Entry("r1", content_hash(raw), "running", 1, "a.json", "me", ""))
    (spool.done / "a.json").unlink()
    assert handler.handle(_claimed(spool, "a.json", REQUEST)) == "succeeded"
    assert recorder.calls == 1


def test_resume_counts_attempts_and_gives_up(spool: Spool) -> None:
    """attempts >= max_attempts → failed/interrupted without running."""
    from flowdrop.daemon.ledger import content_hash

    raw = json.dumps(REQUEST).encode()
    Ledger(spool).put(Entry("r1", content_hash(raw), "running", 2, "a.json", "old", ""))
    recorder = Recorder(spool)
    assert (
        _handler(spool, recorder, attempts=2).handle(_claimed(spool, "a.json", REQUEST)) == "failed"
    )
    result = json.loads(spool.result_path("r1").read_text())
    assert result["error"]["code"] == "interrupted"
    assert recorder.calls == 0


def test_rejection_after_a_real_request_does_not_touch_its_outbox(spool: Spool) -> None:
    """An invalid file named like an existing request id only goes to quarantine."""
    handler = _handler(spool, Recorder(spool))
    handler.handle(_claimed(spool, "r1.json", REQUEST))
    before = spool.result_path("r1").read_bytes()
    assert handler.handle(_claimed(spool, "r1.json", "{nope")) == "rejected"
    assert spool.result_path("r1").read_bytes() == before
    reason = json.loads((spool.quarantine / "r1.json.reason.json").read_text())
    assert reason["error"]["code"] == "invalid_json"


def test_rejected_id_can_be_resubmitted_corrected(spool: Spool) -> None:
    """A rejected request does not reserve its id: the corrected file runs."""
    recorder = Recorder(spool)
    handler = _handler(spool, recorder)
    assert handler.handle(_claimed(spool, "r1.json", '{"templateId": "t"}')) == "rejected"
    assert handler.handle(_claimed(spool, "r1.json", REQUEST)) == "succeeded"
    assert recorder.calls == 1
    status = json.loads(spool.status_path("r1").read_text())
    assert status["seq"] > 3  # seq kept growing across both submissions


def test_a_directory_in_work_is_quarantined(spool: Spool) -> None:
    """Non-regular entries are quarantined with path_violation."""
    (spool.work / "dir.json").mkdir()
    assert _handler(spool, Recorder(spool)).handle(spool.work / "dir.json") == "rejected"
    reason = json.loads((spool.quarantine / "dir.json.reason.json").read_text())
    assert (
        reason["error"]["message"]
        == "'dir.json' is a directory, not a regular file; it was not followed or read."
    )


def test_a_hard_link_is_refused_unread(spool: Spool, tmp_path: Path) -> None:
    """A request with a second name (maybe outside the spool) is path_violation, unread."""
    outside = tmp_path / "outside.json"
    outside.write_text(json.dumps(REQUEST))
    os.link(outside, spool.work / "hl.json")
    recorder = Recorder(spool)
    assert _handler(spool, recorder).handle(spool.work / "hl.json") == "rejected"
    assert recorder.calls == 0
    result = json.loads(spool.result_path("hl").read_text())
    assert result["error"]["message"] == (
        "'hl.json' is a hard link (2 links), not a file of its own; it was not read. "
        "Copy the request instead of linking it."
    )


def test_undecodable_file_names_become_replacement_characters(spool: Spool) -> None:
    """A name with invalid UTF-8 bytes is quarantined with a JSON-safe fileName."""
    name = os.fsdecode(b"bad-\xff.json")
    (spool.work / name).write_text("{}")
    assert _handler(spool, Recorder(spool)).handle(spool.work / name) == "rejected"
    reason_path = spool.quarantine / f"{name}.reason.json"
    reason = json.loads(reason_path.read_text())
    assert reason["fileName"] == "bad-\ufffd.json"
    assert reason["error"]["code"] == "invalid_request"


def test_result_write_failure_is_recorded_as_storage_error(
    spool: Spool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """EIO while publishing the result: the request ends failed/storage_error, not succeeded."""
    with armed(monkeypatch, "result_before_rename=eio@1"):
        outcome = _handler(spool, Recorder(spool)).handle(_claimed(spool, "a.json", REQUEST))
    assert outcome == "failed"
    result = json.loads(spool.result_path("r1").read_text())
    assert result["error"]["code"] == "storage_error"
    assert result["error"]["message"] == "Could not write 'r1.result.json': Input/output error."


def test_ended_requests_leave_no_per_request_lock_behind(spool: Spool) -> None:
    """The outbox's per-request lock map does not grow for the life of the daemon."""
    handler = _handler(spool, Recorder(spool))
    for index in range(20):
        body = {**REQUEST, "requestId": f"r{index}"}
        assert handler.handle(_claimed(spool, f"r{index}.json", body)) == "succeeded"
    assert handler.handle(_claimed(spool, "bad.json", "{not json")) == "rejected"
    assert handler.outbox._locks == {}


def test_a_done_move_undone_by_a_power_cut_files_the_request_away_without_a_second_run(
    spool: Spool,
) -> None:
    """The move to done/ is not fsynced: a cut may put the file back in work/ after its result,
    terminal status and ledger entry were durable. Handling it again is a duplicate."""
    processor = Recorder(spool)
    handler = _handler(spool, processor)
    assert handler.handle(_claimed(spool, "r1.json", REQUEST)) == "succeeded"
    result = spool.result_path("r1").read_bytes()
    (done,) = spool.done.iterdir()
    os.rename(done, spool.work / "r1.json")  # what the cut undid
    assert handler.handle(spool.work / "r1.json") == "duplicate"
    assert processor.calls == 1
    assert spool.result_path("r1").read_bytes() == result
    assert [p.name for p in spool.work.iterdir()] == []


def test_a_progress_report_of_the_phase_already_shown_writes_no_status(spool: Spool) -> None:
    """The orchestrator reports `validating` right after the running status said so."""
    phases: list[str] = []

    def processor(request: RunRequest, request_id: str, progress: ProgressCallback) -> RunResult:
        for phase in (Phase.VALIDATING, Phase.SIMULATING, Phase.SIMULATING, Phase.CAPTURING):
            progress(phase, f"{phase.value}…")
            phases.append(json.loads(spool.status_path(request_id).read_text())["phase"])
        return Recorder(spool)(request, request_id, lambda _p, _m: None)

    handler = RequestHandler(spool, processor, Limits(4096, 3))
    assert handler.handle(_claimed(spool, "r1.json", REQUEST)) == "succeeded"
    assert phases == ["validating", "simulating", "simulating", "capturing"]
    # accepted, running/validating, simulating, capturing, succeeded
    assert json.loads(spool.status_path("r1").read_text())["seq"] == 5


class _SyncCounter:
    """Stands in for libc (syncfs) and os.fsync; records each call with what was synced."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from flowdrop.core.fs import storage

        self.calls: list[str] = []
        real_fsync = os.fsync
        monkeypatch.setattr(storage, "_libc", self)
        monkeypatch.setattr(storage, "filesystem_type", lambda _path: "ext4")

        def fsync(fd: int) -> None:
            self.calls.append("fsync " + Path(os.readlink(f"/proc/self/fd/{fd}")).name)
            real_fsync(fd)

        monkeypatch.setattr(os, "fsync", fsync)

    def syncfs(self, fd: int) -> int:
        self.calls.append("syncfs " + Path(os.readlink(f"/proc/self/fd/{fd}")).name)
        return 0


def test_a_request_costs_one_sync_to_start_one_per_progress_status_and_two_to_end(
    spool: Spool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fsync budget of the spool side (docs/architecture.md, "Durability"): the start batch
    syncs its data (statuses, ledger, the request's bytes) once and leaves its renames; a progress
    status is one fsync; the end batch syncs its data, renames, and syncs the renames."""
    counter = _SyncCounter(monkeypatch)
    recorder = Recorder(spool)
    assert _handler(spool, recorder).handle(_claimed(spool, "a.json", REQUEST)) == "succeeded"
    assert [call.split(" ")[0] for call in counter.calls] == ["syncfs", "fsync", "syncfs", "syncfs"]
    start, progress, end_data, end_renames = counter.calls
    assert start.startswith("syncfs .tmp-r1.status.json.")  # the batch's first temporary
    assert progress.startswith("fsync .tmp-r1.status.json.")
    assert end_data.startswith("syncfs .tmp-r1.result.json.")
    assert end_renames == "syncfs outbox"
    assert (spool.done / "a.json").exists()


def test_the_end_batch_makes_the_processors_published_renames_durable(
    spool: Spool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The orchestrator leaves its last publishing rename to the daemon (flush=False): the end
    batch's data sync covers the roots — free with syncfs on one filesystem, one fsync per root
    where syncfs is no flush (FUSE) — before the result is shown."""
    roots = (tmp_path / "runs", tmp_path / "telemetry")
    for root in roots:
        root.mkdir()
    counter = _SyncCounter(monkeypatch)
    handler = RequestHandler(spool, Recorder(spool), Limits(4096, 3), roots=roots)
    assert handler.handle(_claimed(spool, "a.json", REQUEST)) == "succeeded"
    assert [call.split(" ")[0] for call in counter.calls] == ["syncfs", "fsync", "syncfs", "syncfs"]
    from flowdrop.core.fs import storage

    monkeypatch.setattr(storage, "filesystem_type", lambda _path: "fuse.lazyfs")
    counter.calls.clear()
    body = {**REQUEST, "requestId": "r2"}
    assert handler.handle(_claimed(spool, "b.json", body)) == "succeeded"
    end = counter.calls[counter.calls.index("fsync runs") - 3 :]
    assert [call.split(" ")[1].split(".")[1] for call in end[:3]] == ["tmp-r2", "tmp-r2", "tmp-r2"]
    assert end[3:5] == ["fsync runs", "fsync telemetry"]  # before any rename is synced
    assert end[5:] == ["fsync outbox", "fsync ledger"]


def test_a_rejection_is_one_batch_with_its_quarantine_move(
    spool: Spool, monkeypatch: pytest.MonkeyPatch
) -> None:
    counter = _SyncCounter(monkeypatch)
    body = {**REQUEST, "mode": "shell"}
    assert _handler(spool, Recorder(spool)).handle(_claimed(spool, "bad.json", body)) == "rejected"
    assert [call.split(" ")[0] for call in counter.calls] == ["syncfs", "syncfs"]
    assert json.loads(spool.status_path("bad").read_text())["state"] == "rejected"
    assert (spool.quarantine / "bad.json").exists()
    assert (spool.quarantine / "bad.json.reason.json").exists()


class _Submitting:
    """A processor that runs elsewhere: ``submit`` starts it, ``result`` answers later."""

    def __init__(self, spool: Spool) -> None:
        self.spool = spool
        self.events: list[str] = []

    def __call__(
        self, request: RunRequest, request_id: str, progress: ProgressCallback
    ) -> RunResult:
        raise AssertionError("the handler submits a processor that can be submitted to")

    def submit(self, request: RunRequest, request_id: str) -> _Submitting.Pending:
        status = self.spool.status_path(request_id)
        self.events.append(f"submit (status on disk: {status.exists()})")
        return _Submitting.Pending(self, request, request_id)

    class Pending:
        def __init__(self, owner: _Submitting, request: RunRequest, request_id: str) -> None:
            self.owner, self.request, self.request_id = owner, request, request_id

        def result(self, progress: ProgressCallback) -> RunResult:
            state = json.loads(self.owner.spool.status_path(self.request_id).read_text())["state"]
            self.owner.events.append(f"result (status {state})")
            return Recorder(self.owner.spool)(self.request, self.request_id, progress)


def test_a_submitted_request_starts_before_the_start_batch_and_answers_after_it(
    spool: Spool,
) -> None:
    """The worker gets the request first, so the start batch's sync overlaps its work; the
    answer is read only once the running status is written."""
    processor = _Submitting(spool)
    handler = RequestHandler(spool, processor, Limits(4096, 3))
    assert handler.handle(_claimed(spool, "r1.json", REQUEST)) == "succeeded"
    assert processor.events == ["submit (status on disk: False)", "result (status running)"]
    assert Ledger(spool).get("r1").state == "succeeded"  # type: ignore[union-attr]


def test_a_failed_start_batch_still_collects_the_submitted_request(
    spool: Spool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker is never left lent out: the answer is collected, the error propagates and the
    file stays in work/ for a later attempt."""
    processor = _Submitting(spool)
    handler = RequestHandler(spool, processor, Limits(4096, 3))
    path = _claimed(spool, "r1.json", REQUEST)
    with armed(monkeypatch, "after_running_status=eio"), pytest.raises(OSError, match="failpoint"):
        handler.handle(path)
    assert processor.events == ["submit (status on disk: False)", "result (status running)"]
    assert path.exists()


def test_a_start_batch_that_cannot_be_written_stops_the_request_before_it_runs(
    spool: Spool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full spool: the worker is handed the request only once the batch's files are written,
    so retries while the disk is full run nothing (and publish no fresh runs)."""
    import errno

    from flowdrop.core.errors import FlowdropError
    from flowdrop.core.fs import writebatch

    def full(path: Path, data: bytes, *, sync: bool) -> Path:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(writebatch, "write_temp", full)
    processor = _Submitting(spool)
    path = _claimed(spool, "r1.json", REQUEST)
    with pytest.raises(FlowdropError, match="No space left on device"):
        RequestHandler(spool, processor, Limits(4096, 3)).handle(path)
    assert processor.events == []
    assert path.exists()
    assert not any(p.name.startswith(".tmp-") for p in spool.outbox.iterdir())
