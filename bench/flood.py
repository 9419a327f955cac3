#!/usr/bin/env python3
"""Flood a real daemon with N requests and report throughput, peak RSS/fds and overflows.

    .venv/bin/python bench/flood.py --requests 50000 --workers 4 [--stopped] [--dir /mnt/tmpfs]

The spool lives in ``--dir`` (default: a fresh temporary directory on the default filesystem;
point it at a tmpfs to measure the daemon rather than fsync). Uses ``counting_processor``, so
every request's execution is recorded and the script checks each ran exactly once.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from flowdrop.daemon.health import read_health
from flowdrop.daemon.testing import DaemonProcess, write_config


def _drop(inbox: Path, count: int) -> None:
    for index in range(count):
        request_id = f"b{index}"
        body = {
            "schemaVersion": 1,
            "requestId": request_id,
            "templateId": "t",
            "mode": "simulation",
        }
        temp = inbox / f".{request_id}.tmp"
        temp.write_bytes(json.dumps(body).encode())
        os.rename(temp, inbox / f"{request_id}.json")


def _proc_numbers(pid: int) -> tuple[int, int]:
    status = Path(f"/proc/{pid}/status").read_text()
    rss = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:"))
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--stopped", action="store_true", help="drop before the daemon starts")
    parser.add_argument("--dir", type=Path, default=None)
    parser.add_argument("--reconcile", type=float, default=2.0, help="reconcile_interval (s)")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="flowdrop-flood-", dir=args.dir))
    inbox = base / "spool" / "inbox"
    inbox.mkdir(parents=True)
    (base / "templates").mkdir()
    config = write_config(
        base, workers=args.workers, reconcile_interval=args.reconcile, health_interval=0.5
    )
    if args.stopped:
        _drop(inbox, args.requests)
    started = time.monotonic()
    daemon = DaemonProcess(config)
    daemon.wait_ready(timeout=120)
    if not args.stopped:
        _drop(inbox, args.requests)
    done = base / "spool" / "done"
    peak_fds = 0
    while len(os.listdir(done)) < args.requests:
        peak_fds = max(peak_fds, _proc_numbers(daemon.pid)[1])
        time.sleep(0.5)
    elapsed = time.monotonic() - started
    hwm_kib, _ = _proc_numbers(daemon.pid)
    health = read_health(base / "spool" / "state" / "health.json") or {}
    daemon.stop()
    runs = {}
    for marker in os.listdir(base / "runs" / "executions"):
        runs[marker.split(".", 1)[0]] = runs.get(marker.split(".", 1)[0], 0) + 1
    report = {
        "requests": args.requests,
        "stopped": args.stopped,
        "workers": args.workers,
        "seconds": round(elapsed, 1),
        "requestsPerSecond": round(args.requests / elapsed),
        "vmHwmMiB": round(hwm_kib / 1024, 1),
        "peakFds": peak_fds,
        "inotifyOverflows": len(daemon.events("inotify_overflow")),
        "observerAlive": health.get("observerAlive"),
        "exactlyOnce": len(runs) == args.requests and set(runs.values()) == {1},
        "spool": str(base),
    }
    print(json.dumps(report, indent=2))
    return 0 if report["exactlyOnce"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
