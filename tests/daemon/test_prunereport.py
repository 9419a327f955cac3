"""The prune report: decisions as data (`--json`) and as lines for people."""

from __future__ import annotations

from flowdrop.core.errors import ErrorCode, FlowdropError
from flowdrop.daemon.config import DAY
from flowdrop.daemon.prunereport import Area, Decision, Limits, PruneReport, Reason, describe


def _report(*, dry_run: bool = False) -> PruneReport:
    report = PruneReport(Limits(30 * DAY, 30 * DAY, 90 * DAY, None), dry_run)
    error = FlowdropError(ErrorCode.STORAGE_ERROR, "Could not remove 'done/x.json': EACCES.")
    report.decisions += [
        Decision(Area.DONE, "old.json", True, Reason.EXPIRED, "40d old, limit 30d", 40 * DAY,
                 ("done/old.json",), 2048),
        Decision(Area.DONE, "new.json", False, Reason.YOUNG, "1d old, limit 30d", DAY),
        Decision(Area.DONE, "x.json", False, Reason.FAILED, error.message, 40 * DAY,
                 error=error.body()),
        Decision(Area.RUNS, "run_a", False, Reason.NEVER, "retain_runs is never", 50 * DAY),
        Decision(Area.RUNS, "run_b", False, Reason.BUNDLE_SOURCE,
                 "bundle 'orders' was captured from it", 50 * DAY),
    ]  # fmt: skip
    return report


def test_lines_say_what_was_removed_kept_and_why_and_count_the_young() -> None:
    lines = list(describe(_report()))
    assert lines[0] == "flowdrop prune: limits done 30d, outbox 30d, quarantine 90d, runs never"
    assert any(line.split() == ["removed", "done/old.json", "40d", "old,", "limit", "30d"]
               for line in lines)  # fmt: skip
    assert any(
        "done/x.json" in line and "storage_error: Could not remove" in line for line in lines
    )
    assert any(
        "runs/run_b" in line and "bundle 'orders' was captured from it (bundle_source)" in line
        for line in lines
    )
    assert "new.json" not in "\n".join(lines)  # counted, not listed
    assert any(line.split()[:3] == ["kept", "1", "in"] and "done/" in line for line in lines)
    assert lines[-1] == "removed 1 (2.0 KiB), kept 4, 1 could not be removed"


def test_verbose_lists_every_entry_and_dry_run_says_would_remove() -> None:
    lines = list(describe(_report(dry_run=True), verbose=True))
    assert lines[0].endswith("(dry run: nothing was removed)")
    assert any("new.json" in line and "(younger_than_limit)" in line for line in lines)
    assert any(line.strip().startswith("would remove done/old.json") for line in lines)


def test_json_report_has_every_decision_with_its_error_body() -> None:
    data = _report().to_json()
    assert data["limits"] == {"done": 30 * DAY, "outbox": 30 * DAY, "quarantine": 90 * DAY,
                              "runs": None}  # fmt: skip
    assert (data["removed"], data["kept"], data["freedBytes"]) == (1, 4, 2048)
    failed = next(d for d in data["decisions"] if d["name"] == "x.json")
    assert failed["action"] == "kept" and failed["reason"] == "remove_failed"
    assert failed["error"] == {
        "code": "storage_error",
        "message": "Could not remove 'done/x.json': EACCES.",
        "details": {},
    }
    assert not _report().ok
