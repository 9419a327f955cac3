"""Retention (`flowdrop prune`): a world of old and new runs, bundles, results and spool files.

Ages are max(mtime, ctime), and a test cannot make a ctime old, so the world is judged from a
clock 100 days ahead (``NOW``): untouched entries are 100 days old, entries marked ``young`` get
an mtime one day before ``NOW``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from flowdrop.core.errors import ErrorCode
from flowdrop.core.fs.locking import try_flock
from flowdrop.daemon import retention
from flowdrop.daemon.config import DAY, ConfigError, Settings, load_settings, parse_duration
from flowdrop.daemon.inflight import InFlight
from flowdrop.daemon.prunereport import Area, PruneReport, Reason
from flowdrop.daemon.retention import prune
from flowdrop.daemon.runguard import runs_in_use
from flowdrop.daemon.spool import Spool

NOW = time.time() + 100 * DAY


def young(path: Path) -> Path:
    """Make ``path`` one day old as seen from NOW."""
    os.utime(path, (NOW - DAY, NOW - DAY))
    return path


class World:
    """A spool, a runs root and a telemetry root under tmp_path, filled by hand."""

    def __init__(self, base: Path, **config: Any) -> None:
        self.base = base
        data = {
            "spool": "spool",
            "runs_root": "runs",
            "telemetry_root": "telemetry",
            "templates": ["templates"],
            **config,
        }
        (base / "flowdrop.yaml").write_text(json.dumps(data))
        self.config = base / "flowdrop.yaml"
        self.settings = load_settings(self.config, env={})
        self.spool = Spool(self.settings.spool, "test")
        self.spool.ensure(own_work=False)
        self.runs = self.settings.runs_root
        self.telemetry = self.settings.telemetry_root
        self.runs.mkdir()
        self.telemetry.mkdir()

    def run(self, run_id: str, template_id: str, *, is_young: bool = False) -> Path:
        run_dir = self.runs / run_id
        (run_dir / "model").mkdir(parents=True)
        (run_dir / "series").mkdir()
        (run_dir / "series" / "x.csv").write_text("bin_index,value\n0,1\n")
        (run_dir / "run.json").write_text(json.dumps({"schemaVersion": 1, "runId": run_id}))
        metadata = {"templateId": template_id, "mode": "simulation"}
        (run_dir / "model" / "metadata.json").write_text("\ufeff" + json.dumps(metadata))
        if is_young:
            young(run_dir / "run.json")
            young(run_dir)
        return run_dir

    def bundle(self, key: str, source_run_id: str | None, *, raw: str | None = None) -> Path:
        bundle_dir = self.telemetry / key
        bundle_dir.mkdir()
        (bundle_dir / "manifest.json").write_text('{"schemaVersion": 2}')
        if raw is not None:
            (bundle_dir / "bundle.json").write_text(raw)
        elif source_run_id is not None:
            info = {
                "schemaVersion": 1,
                "createdAtUtc": "2026-01-01T00:00:00Z",
                "sourceRunId": source_run_id,
                "templateId": "b",
                "templateVersion": "1.0.0",
                "captureKey": key,
                "parametersHash": "sha256:0",
                "rngSeed": None,
            }
            (bundle_dir / "bundle.json").write_text(json.dumps(info))
        return bundle_dir

    def outbox(
        self, request_id: str, result: dict[str, Any] | None = None, *, is_young: bool = False
    ) -> list[Path]:
        status = self.spool.status_path(request_id)
        status.write_text(json.dumps({"requestId": request_id, "state": "succeeded"}))
        paths = [status]
        if result is not None:
            path = self.spool.result_path(request_id)
            path.write_text(json.dumps({"requestId": request_id, "state": "succeeded", **result}))
            paths.append(path)
        if is_young:
            for path in paths:
                young(path)
        return paths

    def request(self, where: Path, name: str, template_id: str, **options: Any) -> Path:
        where.mkdir(parents=True, exist_ok=True)
        body = {"schemaVersion": 1, "templateId": template_id, "mode": "simulation"}
        if options:
            body["options"] = options
        path = where / name
        path.write_text(json.dumps(body))
        return path

    def file(self, path: Path, *, is_young: bool = False) -> Path:
        path.write_text("{}")
        return young(path) if is_young else path

    def exists(self) -> set[str]:
        """Every file and run left, relative to the base (runs as directories)."""
        found = {str(p.relative_to(self.base)) for p in self.runs.iterdir()}
        for area in (self.spool.outbox, self.spool.done, self.spool.quarantine):
            found |= {str(p.relative_to(self.base)) for p in area.iterdir()}
        return found


@pytest.fixture
def world(tmp_path: Path) -> World:
    """Old and new runs, bundles, results, done and quarantined files, requests in flight."""
    w = World(tmp_path)
    w.run("run_a_orphan", "a")
    w.run("run_a_young", "a", is_young=True)
    w.run("run_b_source", "b")
    w.bundle("orders", "run_b_source")
    w.bundle("handmade", None)  # no bundle.json: names nothing
    w.run("run_a_recent", "a")
    w.run("run_a_recent_source", "a")
    w.outbox(
        "req-new",
        {"run": {"runId": "run_a_recent"}, "capture": {"sourceRunId": "run_a_recent_source"}},
        is_young=True,
    )
    w.run("run_a_named_old", "a")
    w.outbox("req-old", {"run": {"runId": "run_a_named_old"}})
    w.run("run_c_inflight", "c")
    w.request(w.spool.work_root / "host-1", "req-flying.json", "c")
    w.outbox("req-flying")  # its status is old (the daemon was down), it is still in flight
    w.run("run_d_pinned", "d")
    w.request(w.spool.inbox, "req-pinned.json", "e", runId="run_d_pinned")
    (w.runs / "executions").mkdir()  # not a run
    stale = w.runs / ".tmp-run_gone.pruned.0123456789ab"
    stale.mkdir()
    w.file(w.spool.done / "old.json")
    w.file(w.spool.done / "new.json", is_young=True)
    w.file(w.spool.quarantine / "bad.json")
    w.file(w.spool.quarantine / "bad.json.reason.json")
    w.file(w.spool.quarantine / "fresh.json")
    w.file(w.spool.quarantine / "fresh.json.reason.json", is_young=True)
    w.file(w.spool.quarantine / "orphan.json.reason.json")
    return w


def _reasons(report: PruneReport) -> dict[str, str]:
    return {f"{d.area.value}/{d.name}": d.reason.value for d in report.decisions}


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
    reasons = _reasons(report)
    assert reasons == {
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


def test_crash_debris_of_an_earlier_prune_is_swept(world: World) -> None:
    """A run renamed aside by a prune that died is removed by the next one."""
    prune(world.settings, now=NOW)
    assert not list(world.runs.glob(".tmp-*"))


def test_older_than_overrides_every_configured_age(world: World) -> None:
    """--older-than 1h: the one-day-old entries go too, protected runs still stay."""
    report = prune(world.settings, now=NOW, older_than=3600)
    reasons = _reasons(report)
    assert reasons["runs/run_a_young"] == "expired"
    assert reasons["done/new.json"] == "expired"
    assert reasons["outbox/req-new"] == "expired"
    # The result naming run_a_recent is one day old, older than 1h: it protects nothing now.
    assert reasons["runs/run_a_recent"] == "expired"
    assert reasons["runs/run_b_source"] == "bundle_source"
    assert reasons["runs/run_c_inflight"] == "in_flight"
    assert reasons["outbox/req-flying"] == "in_flight"


def test_config_keys_set_the_default_ages_and_never_keeps_forever(tmp_path: Path) -> None:
    w = World(tmp_path, retain_done="150d", retain_quarantine="1w", retain_runs="never")
    w.run("run_a_orphan", "a")
    w.file(w.spool.done / "old.json")
    w.file(w.spool.quarantine / "bad.json")
    reasons = _reasons(prune(w.settings, now=NOW))
    assert reasons == {
        "runs/run_a_orphan": "retention_disabled",
        "done/old.json": "younger_than_limit",
        "quarantine/bad.json": "expired",
    }
    assert w.settings.retain_outbox == 30 * DAY


def test_an_unreadable_bundle_json_keeps_every_run(world: World) -> None:
    """Provenance that cannot be read might name any run: none is removed, the rest goes on."""
    world.bundle("broken", None, raw="{not json")
    report = prune(world.settings, now=NOW)
    reasons = _reasons(report)
    assert reasons["runs/run_a_orphan"] == "cannot_tell"
    assert reasons["runs/run_a_named_old"] == "cannot_tell"
    detail = next(d.detail for d in report.decisions if d.name == "run_a_orphan")
    assert detail == "cannot read telemetry/broken/bundle.json: no run is removed"
    assert reasons["done/old.json"] == "expired"


def test_an_unreadable_request_in_flight_keeps_every_run(world: World) -> None:
    """A claimed file that is not (yet) a request might use any run."""
    (world.spool.work_root / "host-1" / "half.json").write_text('{"schemaVersion": 1, "temp')
    reasons = _reasons(prune(world.settings, now=NOW))
    assert reasons["runs/run_a_orphan"] == "cannot_tell"
    assert (world.runs / "run_a_orphan").is_dir()


def _after_rename(hook: Callable[[], None]) -> Callable[..., InFlight]:
    """Wrap scan_in_flight: run ``hook`` once, the first time a run has been renamed aside."""
    real = retention.scan_in_flight
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
    monkeypatch.setattr(retention, "scan_in_flight", hook)
    report = prune(world.settings, now=NOW)
    assert _reasons(report)["runs/run_a_orphan"] == "in_flight"
    assert (world.runs / "run_a_orphan" / "series" / "x.csv").is_file()
    assert not list(world.runs.glob(".tmp-*"))


def test_a_run_named_by_a_result_written_during_the_prune_is_renamed_back(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request that reused the run and finished between the scans: its fresh result wins."""
    hook = _after_rename(lambda: world.outbox("req-quick", {"run": {"runId": "run_a_orphan"}}))
    monkeypatch.setattr(retention, "scan_in_flight", hook)
    report = prune(world.settings, older_than=0)  # the real clock: the result is brand new
    decision = next(d for d in report.decisions if d.name == "run_a_orphan")
    assert (decision.reason, decision.detail) == (
        Reason.RECENT_RESULT,
        "result of 'req-quick' was written during the prune",
    )
    assert (world.runs / "run_a_orphan" / "run.json").is_file()


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


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30d", 30 * DAY),
        ("12h", 43_200.0),
        ("90m", 5400.0),
        ("45s", 45.0),
        ("2w", 14 * DAY),
        ("0", 0.0),
        (3600, 3600.0),
        ("never", None),
    ],
)
def test_durations_are_read_in_days_hours_minutes_seconds_weeks(
    text: str | int, seconds: float | None
) -> None:
    assert parse_duration(text) == seconds


def test_a_bad_retention_key_is_a_config_error(tmp_path: Path) -> None:
    config = tmp_path / "flowdrop.yaml"
    config.write_text("retain_runs: soon\nretain_done: -3\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(config, env={})
    assert caught.value.problems == [
        "retain_done: Value error, must not be negative",
        "retain_runs: Value error, 'soon' is not a duration: use e.g. 30d, 12h, 90m, 45s, 2w or never",
    ]


def test_retention_keys_come_from_the_environment_too(tmp_path: Path) -> None:
    settings = load_settings(
        None, env={"FLOWDROP_HOME": str(tmp_path), "FLOWDROP_RETAIN_RUNS": "7d"}
    )
    assert isinstance(settings, Settings)
    assert settings.retain_runs == 7 * DAY


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
    assert _reasons(report)["quarantine/dir.json"] == "expired"
    assert _reasons(report)["quarantine/link.json"] == "expired"
    assert not dropped.exists() and not (world.spool.quarantine / "link.json").is_symlink()
    assert outside.read_text() == "keep me"
