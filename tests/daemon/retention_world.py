"""A retention world in tmp_path: old and new runs, bundles, results and spool files.

Ages are max(mtime, ctime), and a test cannot make a ctime old, so the world is judged from a
clock 100 days ahead (``NOW``): untouched entries are 100 days old, entries marked ``young`` get
an mtime one day before ``NOW``.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from flowdrop.daemon.config import DAY, load_settings
from flowdrop.daemon.prunereport import PruneReport
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


def filled_world(tmp_path: Path) -> World:
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


def reasons(report: PruneReport) -> dict[str, str]:
    return {f"{d.area.value}/{d.name}": d.reason.value for d in report.decisions}
