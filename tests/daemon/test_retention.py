"""Retention (`flowdrop prune`): the policy over a world of old and new runs, bundles, results
and spool files (tests/daemon/retention_world.py), and the command line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from flowdrop.core.errors import ErrorCode
from flowdrop.core.fs.locking import try_flock
from flowdrop.daemon.config import DAY
from flowdrop.daemon.prunereport import Area, Reason
from flowdrop.daemon.retention import prune
from tests.daemon.retention_world import NOW, World, filled_world, reasons


@pytest.fixture
def world(tmp_path: Path) -> World:
    return filled_world(tmp_path)


def test_prune_keeps_exactly_what_it_must(world: World) -> None:
    """30-day limits, judged 100 days on: every rule of the policy at once."""
    report = prune(world.settings, now=NOW)
    assert report.ok, report.to_json()
    assert world.exists() == {
        "runs/run_a_young",
        "runs/run_b_source",
        "runs/run_a_recent",
        "runs/run_a_recent_source",
        "runs/run_c_inflight",
        "runs/run_d_pinned",
        "runs/executions",
        "spool/outbox/req-new.status.json",
        "spool/outbox/req-new.result.json",
        "spool/outbox/req-flying.status.json",
        "spool/done/new.json",
        "spool/quarantine/fresh.json",
        "spool/quarantine/fresh.json.reason.json",
    }
    found = reasons(report)
    assert found == {
        "runs/run_a_orphan": "expired",
        "runs/run_a_young": "younger_than_limit",
        "runs/run_b_source": "bundle_source",
        "runs/run_a_recent": "named_by_recent_result",
        "runs/run_a_recent_source": "named_by_recent_result",
        "runs/run_a_named_old": "expired",
        "runs/run_c_inflight": "in_flight",
        "runs/run_d_pinned": "in_flight",
        "runs/executions": "not_a_run",
        "outbox/req-new": "younger_than_limit",
        "outbox/req-old": "expired",
        "outbox/req-flying": "in_flight",
        "done/old.json": "expired",
        "done/new.json": "younger_than_limit",
        "quarantine/bad.json": "expired",
        "quarantine/fresh.json": "younger_than_limit",
        "quarantine/orphan.json": "expired",
    }
    details = {f"{d.area.value}/{d.name}": d.detail for d in report.decisions}
    assert details["runs/run_b_source"] == "bundle 'orders' was captured from it"
    assert details["runs/run_a_recent"].startswith("result of 'req-new' (24h old) names it")
    assert details["runs/run_c_inflight"] == (
        "a request in flight runs template 'c' (it may reuse this run)"
    )
    assert details["runs/run_d_pinned"] == "a request in flight names it in options.runId"
    assert details["runs/run_a_orphan"] == "100d old, limit 30d; nothing names it"
    removed = {d.name: d.files for d in report.removed(Area.QUARANTINE)}
    assert removed["bad.json"] == ("quarantine/bad.json", "quarantine/bad.json.reason.json")


def test_dry_run_removes_nothing_and_reports_what_a_prune_would(world: World) -> None:
    before = world.exists()
    dry = prune(world.settings, now=NOW, dry_run=True)
    assert world.exists() == before
    real = prune(world.settings, now=NOW)
    assert [(d.area, d.name) for d in dry.removed()] == [(d.area, d.name) for d in real.removed()]
    assert all(d.reason is Reason.EXPIRED for d in dry.removed())


def test_older_than_overrides_every_configured_age(world: World) -> None:
    """--older-than 1h: the one-day-old entries go too, protected runs still stay."""
    report = prune(world.settings, now=NOW, older_than=3600)
    found = reasons(report)
    assert found["runs/run_a_young"] == "expired"
    assert found["done/new.json"] == "expired"
    assert found["outbox/req-new"] == "expired"
    # The result naming run_a_recent is one day old, older than 1h: it protects nothing now.
    assert found["runs/run_a_recent"] == "expired"
    assert found["runs/run_b_source"] == "bundle_source"
    assert found["runs/run_c_inflight"] == "in_flight"
    assert found["outbox/req-flying"] == "in_flight"


def test_config_keys_set_the_default_ages_and_never_keeps_forever(tmp_path: Path) -> None:
    w = World(tmp_path, retain_done="150d", retain_quarantine="1w", retain_runs="never")
    w.run("run_a_orphan", "a")
    w.file(w.spool.done / "old.json")
    w.file(w.spool.quarantine / "bad.json")
    found = reasons(prune(w.settings, now=NOW))
    assert found == {
        "runs/run_a_orphan": "retention_disabled",
        "done/old.json": "younger_than_limit",
        "quarantine/bad.json": "expired",
    }
    assert w.settings.retain_outbox == 30 * DAY


def test_an_unreadable_bundle_json_keeps_every_run(world: World) -> None:
    """Provenance that cannot be read might name any run: none is removed, the rest goes on."""
    world.bundle("broken", None, raw="{not json")
    report = prune(world.settings, now=NOW)
    found = reasons(report)
    assert found["runs/run_a_orphan"] == "cannot_tell"
    assert found["runs/run_a_named_old"] == "cannot_tell"
    detail = next(d.detail for d in report.decisions if d.name == "run_a_orphan")
    assert detail == "cannot read telemetry/broken/bundle.json: no run is removed"
    assert found["done/old.json"] == "expired"


def test_an_unreadable_request_in_flight_keeps_every_run(world: World) -> None:
    """A claimed file that is not (yet) a request might use any run."""
    (world.spool.work_root / "host-1" / "half.json").write_text('{"schemaVersion": 1, "temp')
    found = reasons(prune(world.settings, now=NOW))
    assert found["runs/run_a_orphan"] == "cannot_tell"
    assert (world.runs / "run_a_orphan").is_dir()


def test_a_second_prune_at_the_same_time_is_refused(world: World) -> None:
    with try_flock(world.spool.locks / "prune.lock") as held:
        assert held
        report = prune(world.settings, now=NOW)
    assert not report.ok
    assert [(e.code, e.message) for e in report.errors] == [
        (
            ErrorCode.STORAGE_ERROR,
            "Another flowdrop prune is running on this spool; try again later.",
        )
    ]
    assert (world.runs / "run_a_orphan").is_dir()


def test_a_file_that_cannot_be_removed_is_an_error_in_the_report(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_unlink = Path.unlink

    def unlink(self: Path, missing_ok: bool = False) -> None:
        if self.name == "old.json":
            raise PermissionError(13, "Permission denied")
        real_unlink(self, missing_ok)

    monkeypatch.setattr(Path, "unlink", unlink)
    report = prune(world.settings, now=NOW)
    decision = next(d for d in report.decisions if d.name == "old.json")
    assert decision.reason is Reason.FAILED and not decision.removed
    assert decision.error is not None
    assert decision.error.code is ErrorCode.STORAGE_ERROR
    assert decision.error.message == "Could not remove 'done/old.json': Permission denied."
    assert not report.ok


def _cli(world: World, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "flowdrop.daemon.cli",
            "prune",
            "--config",
            str(world.config),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_prune_command_prints_what_it_removed_and_kept_and_why(world: World) -> None:
    """Real clock, --older-than 0s: everything finished goes, protected runs stay, said why."""
    done = _cli(world, "--older-than", "0s")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == ("flowdrop prune: limits done 0s, outbox 0s, quarantine 0s, runs 0s")
    text = done.stdout
    assert "removed      runs/run_a_orphan" in text
    assert "kept         runs/run_b_source" in text
    assert "bundle 'orders' was captured from it (bundle_source)" in text
    assert "a request in flight runs template 'c' (it may reuse this run) (in_flight)" in text
    assert "kept         outbox/req-flying" in text
    assert lines[-1].startswith("removed ")
    assert (world.runs / "run_c_inflight").is_dir()
    assert not (world.runs / "run_a_orphan").exists()


def test_prune_command_json_and_dry_run(world: World) -> None:
    done = _cli(world, "--older-than", "0s", "--dry-run", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["dryRun"] is True
    assert report["limits"] == {"done": 0.0, "outbox": 0.0, "quarantine": 0.0, "runs": 0.0}
    orphan = next(d for d in report["decisions"] if d["name"] == "run_a_orphan")
    assert orphan["action"] == "removed" and orphan["reason"] == "expired"
    assert (world.runs / "run_a_orphan").is_dir()


def test_prune_command_refuses_a_bad_age_with_exit_2(world: World) -> None:
    done = _cli(world, "--older-than", "soon")
    assert done.returncode == 2
    assert done.stderr == (
        "usage_error: --older-than: 'soon' is not a duration: use e.g. 30d, 12h, 90m, 45s, 2w "
        "or never\n"
    )


def test_quarantined_directories_and_symlinks_go_without_following_anything(
    world: World, tmp_path: Path
) -> None:
    """Anything can be quarantined (a dropped directory, a symlink): removed, target untouched."""
    outside = tmp_path / "outside.txt"
    outside.write_text("keep me")
    dropped = world.spool.quarantine / "dir.json"
    (dropped / "inner").mkdir(parents=True)
    (dropped / "inner" / "x").write_text("x")
    world.file(world.spool.quarantine / "dir.json.reason.json")
    (world.spool.quarantine / "link.json").symlink_to(outside)
    world.file(world.spool.quarantine / "link.json.reason.json")
    report = prune(world.settings, now=NOW)
    assert report.ok, report.to_json()
    assert reasons(report)["quarantine/dir.json"] == "expired"
    assert reasons(report)["quarantine/link.json"] == "expired"
    assert not dropped.exists() and not (world.spool.quarantine / "link.json").is_symlink()
    assert outside.read_text() == "keep me"


def test_a_run_whose_files_share_an_inode_reports_each_byte_freed_once(world: World) -> None:
    """The run writer hard-links a run's repeated series files: counting names would report
    more bytes freed than the disk gets back."""
    run_dir = world.run("run_z_linked", "z")
    series = run_dir / "series" / "x.csv"
    os.link(series, run_dir / "series" / "y.csv")
    os.link(series, run_dir / "series" / "z.csv")
    expected = sum(p.stat().st_size for p in run_dir.rglob("*") if p.is_file()) - 2 * (
        series.stat().st_size
    )
    report = prune(world.settings, now=NOW)
    (removed,) = [d for d in report.removed() if d.name == "run_z_linked"]
    assert removed.size_bytes == expected
