"""What needs a run: bundle provenance, results naming runs, a run's template."""

from __future__ import annotations

import json
import os
from pathlib import Path

from flowdrop.daemon.inflight import RequestCache
from flowdrop.daemon.runneeds import (
    ResultIndex,
    bundle_sources,
    runs_named_by_result,
    template_of,
)
from tests.daemon.retention_world import World


def test_bundles_name_their_source_runs_and_unreadable_ones_are_listed(tmp_path: Path) -> None:
    w = World(tmp_path)
    w.bundle("orders", "run_src")
    w.bundle("handmade", None)
    w.bundle("broken", None, raw='{"sourceRunId": ')
    (w.telemetry / ".tmp-orders.0123").mkdir()  # a capture being staged: not a bundle yet
    assert bundle_sources(w.telemetry) == ({"run_src": "orders"}, ["broken/bundle.json"])


def test_a_result_names_its_run_its_capture_source_and_a_plans_runs() -> None:
    document = {
        "run": {"runId": "run_1"},
        "capture": {"sourceRunId": "run_src"},
        "plan": {"runId": "run_2", "capture": {"sourceRunId": "run_src2"}},
    }
    assert runs_named_by_result(document) == {"run_1", "run_src", "run_2", "run_src2"}
    assert runs_named_by_result({"error": {"code": "x"}, "run": None}) == set()
    assert runs_named_by_result(["not", "a", "result"]) == set()


def test_result_index_keeps_the_youngest_and_then_reads_only_what_changed(tmp_path: Path) -> None:
    w = World(tmp_path)
    old = w.outbox("req-old", {"run": {"runId": "run_1"}})[1]
    os.utime(old, (0, 0))
    w.outbox("req-new", {"run": {"runId": "run_1"}})
    index = ResultIndex(w.spool.outbox, RequestCache(4096), now=w.settings.spool.stat().st_mtime)
    named = index.scan()
    assert named["run_1"][0] == "req-new"
    assert index.scan(changed_only=True) == {}
    w.outbox("req-late", {"capture": {"sourceRunId": "run_9"}})
    assert set(index.scan(changed_only=True)) == {"run_9"}


def test_a_runs_template_comes_from_its_metadata(tmp_path: Path) -> None:
    w = World(tmp_path)
    assert template_of(w.run("run_1", "orders")) == "orders"  # BOM-prefixed, as FlowTime writes
    broken = w.run("run_2", "x")
    (broken / "model" / "metadata.json").write_text(json.dumps(["no", "object"]))
    assert template_of(broken) is None
    assert template_of(tmp_path / "missing") is None
