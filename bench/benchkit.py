"""Helpers of bench/latency.py: dropping requests, a daemon under test, /proc and strace readers."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

REAL_TEMPLATES = Path(
    os.environ.get(
        "FLOWTIME_TEMPLATES",
        Path(__file__).resolve().parents[2] / "shared" / "flowtime" / "templates",
    )
)
FSYNC_CALLS = "fsync,fdatasync,syncfs,sync_file_range,msync"


def drop(inbox: Path, request_id: str, body: dict[str, Any]) -> None:
    temp = inbox / f".{request_id}.tmp"
    temp.write_text(json.dumps({"requestId": request_id, **body}))
    os.rename(temp, inbox / f"{request_id}.json")


def wait_file(path: Path, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            msg = f"timed out waiting for {path.name}"
            raise TimeoutError(msg)
        time.sleep(0.0002)


def result_state(outbox: Path, request_id: str) -> str:
    data = json.loads((outbox / f"{request_id}.result.json").read_bytes())
    if data.get("state") != "succeeded":
        msg = f"{request_id} did not succeed: {data.get('error')}"
        raise RuntimeError(msg)
    return str(data["state"])


def write_config(base: Path, templates: Path, **extra: Any) -> Path:
    config = {
        "spool": str(base / "spool"),
        "runs_root": str(base / "runs"),
        "telemetry_root": str(base / "telemetry"),
        "templates": [str(templates)],
        "workers": 2,
        "log_format": "json",
        "log_level": "warning",
        "stale_after": 0,
        **extra,
    }
    path = base / "flowdrop.yaml"
    base.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config))
    return path


def serve_command(config: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "flowdrop.daemon.cli", "serve", "--config", str(config), *extra]


@contextlib.contextmanager
def running_daemon(
    base: Path, templates: Path, *, strace_out: Path | None = None, **extra: Any
) -> Iterator[subprocess.Popen[bytes]]:
    """``flowdrop serve`` on a fresh spool under ``base`` (optionally under strace)."""
    config = write_config(base, templates, **extra)
    command = serve_command(config)
    if strace_out is not None:
        strace = shutil.which("strace")
        if strace is None:
            msg = "strace is not installed"
            raise RuntimeError(msg)
        command = [
            strace,
            "-f",
            "-qq",
            "-y",
            "-e",
            f"trace={FSYNC_CALLS}",
            "-o",
            str(strace_out),
            *command,
        ]
    log = (base / "daemon.log").open("wb")
    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_file(base / "spool" / "state" / "health.json", timeout=60)
        yield proc
    finally:
        # Under strace, stop the daemon itself: strace detaches on SIGTERM and would leave it.
        for pid in process_tree(proc.pid)[1:2] if strace_out is not None else []:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 60
            while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
                time.sleep(0.05)
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def fsync_lines(strace_out: Path) -> int:
    """Completed fsync-type calls in an strace log (a call split by a signal counts once)."""
    try:
        text = strace_out.read_text(errors="replace")
    except FileNotFoundError:
        return 0
    return sum(1 for line in text.splitlines() if line and "resumed>" not in line)


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (children files of every thread)."""
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{current}/task"):
                with contextlib.suppress(OSError):
                    text = Path(f"/proc/{current}/task/{task}/children").read_text()
                    todo.extend(int(c) for c in text.split())
    return out


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of ``pids`` (plus children they already reaped)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += sum(int(f) for f in fields[11:15])
    return total / ticks


def rss_mb(pid: int) -> float:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load {one:.2f} {five:.2f} {fifteen:.2f}"
