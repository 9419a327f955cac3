"""``state/metrics.prom`` in the Prometheus text exposition format, for node_exporter's
textfile collector. Written to a temporary name and renamed, so the collector never reads half a
file. Every sample carries an ``instance`` label.
"""

from __future__ import annotations

from pathlib import Path

from flowdrop.core.fs.storage import atomic_write_bytes
from flowdrop.daemon.health import HealthSnapshot

REQUEST_STATES = ("succeeded", "failed", "rejected", "duplicates", "conflicts")


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render(snapshot: HealthSnapshot, durations: dict[str, float]) -> str:
    inst = f'instance="{_label(snapshot.instance)}"'
    lines: list[str] = []

    def metric(name: str, kind: str, help_text: str, samples: list[tuple[str, float]]) -> None:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            extra = f",{labels}" if labels else ""
            lines.append(f"{name}{{{inst}{extra}}} {_number(value)}")

    counters = snapshot.counters
    metric(
        "flowdrop_requests_total",
        "counter",
        "Requests that ended, by outcome.",
        [(f'outcome="{state}"', counters.get(state, 0)) for state in REQUEST_STATES],
    )
    metric(
        "flowdrop_requests_recovered_total",
        "counter",
        "Claimed requests resumed after a crash or stop.",
        [("", counters.get("recovered", 0))],
    )
    metric(
        "flowdrop_request_duration_seconds",
        "summary",
        "Time from claim to the end of a request.",
        [],
    )
    lines.append(
        f"flowdrop_request_duration_seconds_sum{{{inst}}} {_number(durations.get('sum', 0.0))}"
    )
    lines.append(
        f"flowdrop_request_duration_seconds_count{{{inst}}} {_number(durations.get('count', 0.0))}"
    )
    metric(
        "flowdrop_queue_depth",
        "gauge",
        "Inbox files waiting for a worker.",
        [("", snapshot.queue_depth)],
    )
    metric("flowdrop_running", "gauge", "Requests running now.", [("", snapshot.running)])
    metric("flowdrop_workers", "gauge", "Configured worker threads.", [("", snapshot.workers)])
    metric(
        "flowdrop_observer_alive",
        "gauge",
        "1 when the inbox observer (or the polling loop) is alive.",
        [("", 1 if snapshot.observer_alive else 0)],
    )
    metric(
        "flowdrop_healthy",
        "gauge",
        "1 when WATCHDOG=1 would be sent.",
        [("", 1 if snapshot.healthy else 0)],
    )
    metric(
        "flowdrop_last_scan_timestamp_seconds",
        "gauge",
        "Unix time of the last complete inbox scan.",
        [("", snapshot.last_scan_at.timestamp() if snapshot.last_scan_at else 0)],
    )
    metric(
        "flowdrop_inotify_overflows_total",
        "counter",
        "inotify queue overflows reported by watchdog (each triggers a rescan).",
        [("", snapshot.overflows)],
    )
    metric(
        "flowdrop_observer_restarts_total",
        "counter",
        "Times the inbox observer died and was restarted.",
        [("", snapshot.observer_restarts)],
    )
    metric(
        "flowdrop_worker_processes",
        "gauge",
        "Worker processes alive (0 when the orchestrator runs in the worker threads).",
        [("", snapshot.worker_processes)],
    )
    metric(
        "flowdrop_worker_processes_replaced_total",
        "counter",
        "Worker processes replaced after they died or ran past request_timeout.",
        [("", snapshot.worker_processes_replaced)],
    )
    metric(
        "flowdrop_request_timeouts_total",
        "counter",
        "Requests that ended failed/timeout.",
        [("", snapshot.timeouts)],
    )
    cache = snapshot.compile_cache
    metric(
        "flowdrop_compile_cache_lookups_total",
        "counter",
        "Model generations answered from the compile cache (hit) or computed (miss).",
        [('result="hit"', cache.hits), ('result="miss"', cache.misses)],
    )
    metric(
        "flowdrop_compile_cache_evictions_total",
        "counter",
        "Models dropped from the compile cache to stay within compile_cache_size.",
        [("", cache.evictions)],
    )
    metric(
        "flowdrop_compile_cache_entries",
        "gauge",
        "Models held by the compile cache.",
        [("", cache.entries)],
    )
    return "\n".join(lines) + "\n"


def _number(value: float) -> str:
    if float(value).is_integer():
        return str(int(value))
    return repr(float(value))


def write_metrics(path: Path, snapshot: HealthSnapshot, durations: dict[str, float]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, render(snapshot, durations).encode(), durable=False)
