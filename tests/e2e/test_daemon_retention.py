"""`flowdrop prune` racing a real daemon (the real orchestrator) loses nothing in flight.

Runs expire at once (``retain_runs: 0``), so between two requests a prune removes every run
nobody needs; the requests keep reusing the same deterministic run ids, so they race the
prunes for exactly the runs being removed. Every request must still succeed, the bundle's
source run must survive, and the prunes must really have removed runs meanwhile.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from flowdrop.daemon.config import load_settings
from flowdrop.daemon.prunereport import Area, PruneReport, Reason
from flowdrop.daemon.retention import prune
from flowdrop.daemon.testing import (
    DaemonProcess,
    drop_json,
    mini_template,
    read_json,
    terminal_status,
    wait_until,
    write_config,
)

REQUESTS = 36


def _body(request_id: str, template_id: str, mode: str, bins: int) -> dict[str, object]:
    return {
        "schemaVersion": 1,
        "requestId": request_id,
        "templateId": template_id,
        "mode": mode,
        "parameters": {"bins": bins},
    }


def test_a_prune_racing_a_running_daemon_loses_nothing_in_flight(tmp_path: Path) -> None:
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "a.yaml").write_text(mini_template("race-a", None))
    (templates / "b.yaml").write_text(mini_template("race-b", None))
    (templates / "t.yaml").write_text(mini_template("race-t", "race-bundle"))
    config = write_config(
        tmp_path,
        processor=None,
        workers=2,
        retain_runs=0,
        retain_done=0,
        retain_quarantine=0,
        retain_outbox="1h",  # kept, so the test can read every result
    )
    settings = load_settings(config, env={})
    inbox, outbox = settings.spool / "inbox", settings.spool / "outbox"
    daemon = DaemonProcess(config)
    try:
        daemon.wait_ready()
        # A bundle first: its source run must survive every prune.
        drop_json(inbox, "seed.json", _body("seed", "race-t", "telemetry", 4))
        wait_until(lambda: terminal_status(outbox, "seed"), timeout=30, message="seed")
        seed = read_json(outbox / "seed.result.json")
        assert seed["state"] == "succeeded", seed
        source_run = seed["capture"]["sourceRunId"]

        reports: list[PruneReport] = []
        stop = threading.Event()

        def prune_forever() -> None:
            while not stop.is_set():
                reports.append(prune(settings))
                time.sleep(0.005)

        pruner = threading.Thread(target=prune_forever, name="pruner")
        pruner.start()
        try:
            ids = []
            for index in range(REQUESTS):
                template, mode = [("race-a", "simulation"), ("race-b", "simulation")][index % 2]
                bins = 4 + index % 2
                if index % 3 == 2:  # a replay of the bundle (its grid: 4 bins)
                    template, mode, bins = "race-t", "telemetry", 4
                request_id = f"race-{index}"
                # Few distinct inputs: most requests reuse a run a prune is about to remove.
                drop_json(inbox, f"{request_id}.json", _body(request_id, template, mode, bins))
                ids.append(request_id)
                time.sleep(0.03)
            for request_id in ids:
                wait_until(
                    lambda rid=request_id: terminal_status(outbox, rid),  # type: ignore[misc]
                    timeout=60,
                    message=f"{request_id} to end",
                )
        finally:
            stop.set()
            pruner.join(timeout=60)
        results = {rid: read_json(outbox / f"{rid}.result.json") for rid in ids}
        failed = {rid: r for rid, r in results.items() if r["state"] != "succeeded"}
        assert failed == {}
        assert (settings.runs_root / source_run / "run.json").is_file()
        assert all(report.ok for report in reports), [r.to_json() for r in reports if not r.ok]
        removed = [d for r in reports for d in r.removed(Area.RUNS)]
        assert removed, "the prunes removed no run: the race did not happen"
        kept_in_flight = [
            d for r in reports for d in r.kept(Area.RUNS) if d.reason is Reason.IN_FLIGHT
        ]
        assert kept_in_flight, "no prune ever met a request in flight"
        assert not any(d.name == source_run for d in removed)
        assert not list(settings.runs_root.glob(".tmp-*")), "a run was left renamed aside"
    finally:
        assert daemon.stop() == 0
    errors = [line for line in daemon.log_lines() if line.get("level") == "error"]
    assert errors == [], json.dumps(errors)[:2000]
