"""Removing runs while a daemon runs: under the run guard, renamed aside, renamed back if needed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from flowdrop.daemon import runremoval
from flowdrop.daemon.inflight import InFlight
from flowdrop.daemon.prunereport import Reason
from flowdrop.daemon.retention import prune
from flowdrop.daemon.runguard import runs_in_use
from flowdrop.daemon.spool import Spool
from tests.daemon.retention_world import NOW, World, filled_world, reasons


@pytest.fixture
def world(tmp_path: Path) -> World:
    return filled_world(tmp_path)


def test_crash_debris_of_an_earlier_prune_is_swept(world: World) -> None:
    """A run renamed aside by a prune that died is removed by the next one."""
    prune(world.settings, now=NOW)
    assert not list(world.runs.glob(".tmp-*"))


def _after_rename(hook: Callable[[], None]) -> Callable[..., InFlight]:
    """Wrap scan_in_flight: run ``hook`` once, the first time a run has been renamed aside."""
    real = runremoval.scan_in_flight
    fired: list[bool] = []

    def scan(spool: Spool, cache: Any) -> InFlight:
        runs = Path(spool.root).parent / "runs"
        if not fired and list(runs.glob(".tmp-run_a_orphan.pruned.*")):
            fired.append(True)
            hook()
        return real(spool, cache)

    return scan


def test_a_run_becoming_needed_during_the_prune_is_renamed_back(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request for its template is claimed while the run is aside: it is restored, whole."""
    hook = _after_rename(lambda: world.request(world.spool.work_root / "host-2", "late.json", "a"))
    monkeypatch.setattr(runremoval, "scan_in_flight", hook)
    report = prune(world.settings, now=NOW)
    assert reasons(report)["runs/run_a_orphan"] == "in_flight"
    assert (world.runs / "run_a_orphan" / "series" / "x.csv").is_file()
    assert not list(world.runs.glob(".tmp-*"))


def test_a_run_named_by_a_result_written_during_the_prune_is_renamed_back(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request that reused the run and finished between the scans: its fresh result wins."""
    hook = _after_rename(lambda: world.outbox("req-quick", {"run": {"runId": "run_a_orphan"}}))
    monkeypatch.setattr(runremoval, "scan_in_flight", hook)
    report = prune(world.settings, older_than=0)  # the real clock: the result is brand new
    decision = next(d for d in report.decisions if d.name == "run_a_orphan")
    assert (decision.reason, decision.detail) == (
        Reason.RECENT_RESULT,
        "result of 'req-quick' was written during the prune",
    )
    assert (world.runs / "run_a_orphan" / "run.json").is_file()


def test_runs_of_a_template_whose_request_is_running_are_kept(world: World) -> None:
    """The daemon holds the run guard of template 'a' (a request of it runs): none is renamed."""
    with runs_in_use(world.spool, "a"):
        report = prune(world.settings, now=NOW)
    decision = next(d for d in report.decisions if d.name == "run_a_orphan")
    assert (decision.reason, decision.detail) == (
        Reason.IN_FLIGHT,
        "a request of template 'a' is running (run guard held)",
    )
    assert (world.runs / "run_a_orphan").is_dir()


def test_a_run_the_daemon_wrote_afresh_meanwhile_wins_over_the_one_aside(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the run is aside a request writes it again (same id) and is in flight: its copy stays."""

    def rewrite() -> None:
        world.run("run_a_orphan", "a", is_young=True)
        (world.runs / "run_a_orphan" / "fresh").write_text("new copy")
        world.request(world.spool.work_root / "host-2", "rewrite.json", "a")

    monkeypatch.setattr(runremoval, "scan_in_flight", _after_rename(rewrite))
    report = prune(world.settings, now=NOW)
    assert reasons(report)["runs/run_a_orphan"] == "in_flight"
    assert (world.runs / "run_a_orphan" / "fresh").read_text() == "new copy"
    assert not list(world.runs.glob(".tmp-*"))
