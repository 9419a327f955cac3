"""health.json and metrics.prom: content and atomic replacement."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from flowdrop.daemon.health import HealthSnapshot, read_health, write_health
from flowdrop.daemon.metrics import render, write_metrics


def _snapshot() -> HealthSnapshot:
    return HealthSnapshot(
        instance='host-"1"',
        pid=42,
        watch_mode="inotify",
        observer_alive=True,
        healthy=True,
        started_at=datetime(2026, 1, 1, tzinfo=UTC),
        last_scan_at=datetime(2026, 1, 1, 0, 0, 10, tzinfo=UTC),
        last_scan_age_seconds=1.23456,
        queue_depth=3,
        running=1,
        workers=2,
        draining=False,
        counters={"succeeded": 5, "failed": 1},
        overflows=2,
    )


def test_metrics_are_in_textfile_collector_format() -> None:
    """HELP/TYPE lines, escaped instance label, counters per outcome, gauges."""
    text = render(_snapshot(), {"sum": 1.5, "count": 6})
    lines = text.splitlines()
    assert "# TYPE flowdrop_requests_total counter" in lines
    assert 'flowdrop_requests_total{instance="host-\\"1\\"",outcome="succeeded"} 5' in lines
    assert 'flowdrop_requests_total{instance="host-\\"1\\"",outcome="rejected"} 0' in lines
    assert 'flowdrop_request_duration_seconds_sum{instance="host-\\"1\\""} 1.5' in lines
    assert 'flowdrop_queue_depth{instance="host-\\"1\\""} 3' in lines
    assert 'flowdrop_inotify_overflows_total{instance="host-\\"1\\""} 2' in lines
    assert 'flowdrop_last_scan_timestamp_seconds{instance="host-\\"1\\""} 1767225610' in lines
    assert text.endswith("\n")


def test_health_and_metrics_files_are_written_whole(tmp_path: Path) -> None:
    """Both files appear complete with no temporary left behind."""
    write_health(tmp_path / "state" / "health.json", _snapshot())
    write_metrics(tmp_path / "state" / "metrics.prom", _snapshot(), {})
    health = read_health(tmp_path / "state" / "health.json")
    assert health is not None
    assert health["observerAlive"] is True
    assert health["lastScanAgeSeconds"] == 1.235
    assert health["counters"] == {"failed": 1, "succeeded": 5}
    assert sorted(p.name for p in (tmp_path / "state").iterdir()) == ["health.json", "metrics.prom"]
