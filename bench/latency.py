#!/usr/bin/env python3
"""Drop -> result latency of the flowdrop daemon on real FlowTime templates (issue #9's table).

    .venv/bin/python bench/latency.py [--n 30] [--burst 200] [--peer-n 6] [--queue 0] [--status-page]

Every request is a file renamed into the inbox; the clock stops when ``outbox/<id>.result.json``
exists. Real templates come from ``FLOWTIME_TEMPLATES`` (default ../shared/flowtime/templates).

- floor: a bare raw-inotify watcher that claims the file by rename and writes one durable
  result file (temp + fsync + rename + dir fsync) — the least any drop-a-file daemon must do;
- reused run: ``warehouse-picker-waves`` telemetry, the same request again (deterministic id);
- fresh replay: the same with ``deterministicRunId: false`` (the bundle exists);
- simulation: ``warehouse-picker-waves``, distinct parameters, one at a time;
- it-document-processing-continuous: 288 bins, 150 nodes, 3 classes, distinct parameters;
- burst: N distinct ``warehouse-picker-waves`` simulations dropped at once: requests/s and how
  many cores the daemon's process tree used meanwhile;
- fsync-type calls per request (strace -f on a second daemon): reuse, fresh replay, simulation
  and a first capture (source run + bundle + replay run);
- peer: a process per request (``flowdrop serve --once``, a systemd path unit's way);
- memory: RSS of every process of the daemon after the burst; with ``--queue N`` also while N
  requests queued before start are worked off (sampled for 20 s).

Prints medians and ratios against the floor measured in the same run, and the load average.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import select
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchkit import (
    REAL_TEMPLATES,
    cpu_seconds,
    drop,
    fsync_lines,
    load_average,
    process_tree,
    result_state,
    rss_mb,
    running_daemon,
    serve_command,
    wait_file,
    write_config,
)
from flowdrop.core.fs.storage import atomic_write_bytes, fsync_dir
from flowdrop.daemon.config import Settings

Body = Callable[[int], dict[str, Any]]
WAREHOUSE = "warehouse-picker-waves"
SEED = {"kind": "pcg32", "seed": 1}


def telemetry(fresh: bool) -> Body:
    options: dict[str, Any] = {"autoCapture": True}
    if fresh:
        options["deterministicRunId"] = False
    return lambda _i: {
        "templateId": WAREHOUSE,
        "mode": "telemetry",
        "rng": SEED,
        "options": options,
    }


def warehouse_sim(offset: int) -> Body:
    return lambda i: {
        "templateId": WAREHOUSE,
        "mode": "simulation",
        "rng": {"kind": "pcg32", "seed": offset + i},
    }


def itdoc_sim(i: int) -> dict[str, Any]:
    return {
        "templateId": "it-document-processing-continuous",
        "mode": "simulation",
        "rng": SEED,
        "parameters": {"invoiceRate": 10 + (i + 1) / 1000},
    }


def measure(n: int, spool: Path, prefix: str, body: Body) -> list[float]:
    inbox, outbox = spool / "inbox", spool / "outbox"
    samples = []
    for index in range(n):
        request_id = f"{prefix}-{index}-{time.monotonic_ns()}"
        started = time.perf_counter()
        drop(inbox, request_id, body(index))
        wait_file(outbox / f"{request_id}.result.json")
        samples.append((time.perf_counter() - started) * 1000)
        result_state(outbox, request_id)
    return samples


def burst(n: int, spool: Path, pid: int, body: Body) -> tuple[float, float]:
    """(requests/s, cores used) for ``n`` requests dropped at once."""
    inbox, outbox = spool / "inbox", spool / "outbox"
    ids = [f"burst-{i}-{time.monotonic_ns()}" for i in range(n)]
    cpu_before = cpu_seconds(process_tree(pid))
    started = time.perf_counter()
    for index, request_id in enumerate(ids):
        drop(inbox, request_id, body(index))
    for request_id in ids:
        wait_file(outbox / f"{request_id}.result.json", timeout=1800)
    wall = time.perf_counter() - started
    cores = (cpu_seconds(process_tree(pid)) - cpu_before) / wall
    for request_id in ids:
        result_state(outbox, request_id)
    return n / wall, cores


def daemon_scenarios(base: Path, args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    extra: dict[str, Any] = {"workers": args.workers}
    if args.status_page:  # only when asked: older versions have no such key
        extra["status_page"] = True
    with running_daemon(base, REAL_TEMPLATES, **extra) as proc:
        spool = base / "spool"
        measure(1, spool, "warmup-capture", telemetry(False))  # source run, bundle, replay
        measure(2, spool, "warmup-sim", warehouse_sim(900_000))
        out["reused"] = measure(args.n, spool, "reused", telemetry(False))
        out["fresh"] = measure(args.n, spool, "fresh", telemetry(True))
        out["sim"] = measure(args.n, spool, "sim", warehouse_sim(1000))
        out["itdoc"] = measure(max(3, args.n // 3), spool, "itdoc", itdoc_sim)
        out["burst"] = burst(args.burst, spool, proc.pid, warehouse_sim(2000))
        out["rss"] = [round(rss_mb(p), 1) for p in process_tree(proc.pid)]
    return out


def fsync_scenario(base: Path, k: int) -> dict[str, float]:
    trace = base / "strace.txt"
    counts: dict[str, float] = {}
    with running_daemon(base, REAL_TEMPLATES, strace_out=trace, health_interval=600):
        spool = base / "spool"

        def count(name: str, n: int, body: Body) -> None:
            time.sleep(0.5)
            before = fsync_lines(trace)
            measure(n, spool, name, body)
            time.sleep(0.5)
            counts[name] = (fsync_lines(trace) - before) / n

        count("first-capture", 1, telemetry(False))
        count("reused", k, telemetry(False))
        count("fresh-replay", k, telemetry(True))
        count("simulation", k, warehouse_sim(5000))
    return counts


def queue_scenario(base: Path, n: int) -> tuple[float, float]:
    """(max RSS MB of any process, RSS growth MB over the last 10 s) while ``n`` queued run."""
    config = write_config(base, REAL_TEMPLATES)
    subprocess.run([*serve_command(config), "--once"], check=True, capture_output=True)
    inbox = base / "spool" / "inbox"
    body = warehouse_sim(100_000)
    for index in range(n):
        drop(inbox, f"queued-{index}", body(index % 500))
    log = (base / "daemon.log").open("wb")
    proc = subprocess.Popen(serve_command(config), stdout=log, stderr=subprocess.STDOUT)
    samples: list[float] = []
    try:
        for _ in range(40):
            time.sleep(0.5)
            samples.append(max(rss_mb(p) for p in process_tree(proc.pid)))
    finally:
        proc.terminate()
        proc.wait(timeout=120)
        log.close()
    return max(samples), samples[-1] - samples[len(samples) // 2]


IN_MOVED_TO = 0x80
_EVENT = struct.Struct("iIII")


def _floor_loop(fd: int, inbox: Path, claimed: Path, outbox: Path, stop: threading.Event) -> None:
    """Raw inotify (no watchdog): IN_MOVED_TO -> claim by rename -> one durable file."""
    while not stop.is_set():
        ready, _, _ = select.select([fd], [], [], 0.1)
        if not ready:
            continue
        data = os.read(fd, 65536)
        offset = 0
        while offset < len(data):
            _wd, _mask, _cookie, length = _EVENT.unpack_from(data, offset)
            raw = data[offset + _EVENT.size : offset + _EVENT.size + length]
            offset += _EVENT.size + length
            name = raw.rstrip(b"\0").decode()
            if name.startswith(".") or not name.endswith(".json"):
                continue
            try:
                os.rename(inbox / name, claimed / name)
            except FileNotFoundError:
                continue
            fsync_dir(claimed)
            fsync_dir(inbox)
            request_id = name.removesuffix(".json")
            atomic_write_bytes(outbox / f"{request_id}.result.json", b'{"state": "succeeded"}\n')


def floor_scenario(base: Path, n: int) -> list[float]:
    inbox, claimed, outbox = base / "inbox", base / "claimed", base / "outbox"
    for directory in (inbox, claimed, outbox):
        directory.mkdir(parents=True)
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.inotify_init1(os.O_CLOEXEC)
    if fd < 0 or libc.inotify_add_watch(fd, os.fsencode(inbox), IN_MOVED_TO) < 0:
        msg = f"inotify: {os.strerror(ctypes.get_errno())}"
        raise OSError(msg)
    stop = threading.Event()
    thread = threading.Thread(target=_floor_loop, args=(fd, inbox, claimed, outbox, stop))
    thread.start()
    try:
        measure(3, base, "warmup", lambda _i: {})
        return measure(n, base, "floor", lambda _i: {})
    finally:
        stop.set()
        thread.join()
        os.close(fd)


def peer_scenario(base: Path, n: int) -> list[float]:
    """A path unit starting a one-shot service per new file; one process at a time."""
    # The cheapest one-shot: no worker processes to start (when this version has them).
    extra = {"worker_processes": False} if "worker_processes" in Settings.model_fields else {}
    config = write_config(base, REAL_TEMPLATES, **extra)
    command = [*serve_command(config), "--once"]
    subprocess.run(command, check=True, capture_output=True)  # creates the spool
    inbox, outbox = base / "spool" / "inbox", base / "spool" / "outbox"
    body = warehouse_sim(3000)
    samples = []
    for index in range(n):
        request_id = f"peer-{index}-{time.monotonic_ns()}"
        started = time.perf_counter()
        drop(inbox, request_id, body(index))
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_file(outbox / f"{request_id}.result.json")
        samples.append((time.perf_counter() - started) * 1000)
        proc.wait()  # the one-shot exits before the next file arrives
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=30, help="requests per latency scenario")
    parser.add_argument("--burst", type=int, default=200, help="requests in the burst")
    parser.add_argument("--peer-n", type=int, default=6, help="process-per-request samples")
    parser.add_argument("--fsync-k", type=int, default=5, help="requests per fsync count")
    parser.add_argument("--queue", type=int, default=0, help="queued requests for memory")
    parser.add_argument("--workers", type=int, default=2, help="daemon workers (latency, burst)")
    parser.add_argument(
        "--status-page", action="store_true", help="daemon scenarios with status_page: true"
    )
    parser.add_argument(
        "--dir",
        help="where the spools and roots go (default: the system's temp directory); e.g. a "
        "filesystem of its own, so that a syncfs waits for nobody else's dirty data",
    )
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="flowdrop-bench-", dir=args.dir))
    loads = [load_average()]
    try:
        floor = floor_scenario(base / "floor", args.n)
        daemon = daemon_scenarios(base / "daemon", args)
        loads.append(load_average())
        fsyncs = fsync_scenario(base / "fsync", args.fsync_k)
        peer = peer_scenario(base / "peer", args.peer_n)
        queued = queue_scenario(base / "queue", args.queue) if args.queue else None
        loads.append(load_average())
    finally:
        shutil.rmtree(base, ignore_errors=True)
    f = statistics.median(floor)

    def row(name: str, samples: list[float]) -> None:
        m = statistics.median(samples)
        print(f"| {name} | {m:.1f} ms | {m / f:.1f}x floor | n={len(samples)} |")

    print(
        f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}, {args.workers} workers; "
        f"{' -> '.join(loads)}"
    )
    print("| measure | median | vs floor | samples |\n|---|---|---|---|")
    row("floor (watch + claim + 1 durable file)", floor)
    row(f"reused run, {WAREHOUSE}", daemon["reused"])
    row("fresh replay from an existing bundle", daemon["fresh"])
    row(f"simulation, {WAREHOUSE}, distinct parameters", daemon["sim"])
    row("simulation, it-document-processing-continuous", daemon["itdoc"])
    rate, cores = daemon["burst"]
    print(
        f"| burst of {args.burst} distinct simulations | {rate:.1f} req/s | {cores:.2f} cores busy | |"
    )
    counts = ", ".join(f"{k} {v:g}" for k, v in fsyncs.items())
    print(f"| fsync-type calls per request | {counts} | | strace |")
    peer_ratio = statistics.median(peer) / statistics.median(daemon["sim"])
    print(
        f"| peer (process per request) / daemon simulation | {statistics.median(peer):.0f} ms | {peer_ratio:.1f}x | n={len(peer)} |"
    )
    print(f"| RSS after the burst, MB per process | {daemon['rss']} | | |")
    if queued is not None:
        print(
            f"| {args.queue} queued: max RSS, growth last 10 s | {queued[0]:.1f} MB | {queued[1]:+.1f} MB | |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
