#!/usr/bin/env python3
"""The fsync budget per request kind: fsync-type calls of the daemon's process tree, counted
with strace, attributed to what they make durable (docs/reliability.md, "fsync budget").

    .venv/bin/python bench/fsync_budget.py [--k 3]

One daemon runs under ``strace -f -y -e trace=fsync,fdatasync,syncfs,sync_file_range,msync``
(bench/benchkit.py); each kind is dropped ``k`` times, one request at a time, and counted from
the drop until the request file has been filed in ``done/`` or ``quarantine/`` (the last durable
step). Real template ``warehouse-picker-waves`` (the one bench/latency.py uses):

- reuse: telemetry, bundle and replay run exist (deterministic run id) -> nothing is written
  but the spool bookkeeping;
- fresh replay: telemetry with ``deterministicRunId: false`` -> a new replay run;
- simulation: a new seed -> a new simulation run;
- bundle generation: ``telemetry.captureDirectory`` naming a new key -> source simulation run,
  bundle, replay run;
- rejected: a file that is not JSON -> rejected status/result, ledger, quarantine + reason.

The power-loss suite (tests/powerloss) is what says whether a smaller budget is still safe.
"""

from __future__ import annotations

import argparse
import re
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from benchkit import REAL_TEMPLATES, drop, running_daemon, wait_file

WAREHOUSE = "warehouse-picker-waves"
SEED = {"kind": "pcg32", "seed": 1}
CALL = re.compile(r"^\d+\s+(\w+)\((\d+)<([^>]*)>")


def categorize(path: str, base: str) -> str:
    rel = path.removeprefix(base + "/")
    parts = rel.split("/")
    name = parts[-1]
    if parts[0] == "spool":
        place = parts[1] if len(parts) > 1 else ""
        if place == "work":
            return "dir work/" if len(parts) == 3 else "request file (claim)"
        if len(parts) == 2:
            return f"dir {place}/"
        if place == "outbox":
            return "status" if ".status.json" in name else "result"
        if place == "state" and len(parts) >= 3 and parts[2] == "ledger":
            return "dir ledger/" if len(parts) == 3 else "ledger"
        if place == "quarantine":
            return "quarantine reason"
        return f"spool {place}"
    if parts[0] in {"runs", "telemetry"}:
        what = "run" if parts[0] == "runs" else "bundle"
        if len(parts) == 1:
            return f"dir {parts[0]}/"
        if "." in name and not name.startswith(".tmp-"):
            return f"{what} files"
        return f"{what} dirs"
    return f"other {rel}"


def syncfs_label(path: str, base: str) -> str:
    """What one syncfs(2) made durable, from the file it was called on."""
    parts = path.removeprefix(base + "/").split("/")
    if parts[0] == "spool":
        # Called on the batch's first temporary (data) or on its first directory (renames).
        return "syncfs: spool batch data" if ".tmp-" in parts[-1] else "syncfs: spool renames"
    return {"runs": "syncfs: run tree", "telemetry": "syncfs: bundle tree"}.get(
        parts[0], f"syncfs: other {parts[0]}"
    )


class Trace:
    def __init__(self, path: Path, base: Path) -> None:
        self.path = path
        self.base = str(base)
        self.offset = 0

    def take(self) -> Counter[str]:
        """Completed calls since the last take, by category."""
        text = self.path.read_text(errors="replace")
        new, self.offset = text[self.offset :], len(text)
        counts: Counter[str] = Counter()
        for line in new.splitlines():
            if "resumed>" in line:
                continue
            match = CALL.match(line)
            if match:
                path = match.group(3)
                syncfs = match.group(1) == "syncfs"
                counts[
                    syncfs_label(path, self.base) if syncfs else categorize(path, self.base)
                ] += 1
            elif line.strip():
                counts["other"] += 1
        return counts


def filed(spool: Path, name: str) -> bool:
    return (spool / "done" / name).exists() or (spool / "quarantine" / name).exists()


def run_kind(spool: Path, trace: Trace, prefix: str, k: int, body: Any) -> Counter[str]:
    time.sleep(0.5)
    trace.take()
    for index in range(k):
        request_id = f"{prefix}-{index}"
        if isinstance(body, bytes):
            temp = spool / "inbox" / f".{request_id}.tmp"
            temp.write_bytes(body)
            temp.rename(spool / "inbox" / f"{request_id}.json")
        else:
            drop(spool / "inbox", request_id, body(index))
        wait_file(spool / "outbox" / f"{request_id}.result.json")
        deadline = time.monotonic() + 30
        while not filed(spool, f"{request_id}.json") and time.monotonic() < deadline:
            time.sleep(0.001)
    time.sleep(0.3)
    return trace.take()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--k", type=int, default=3, help="requests per kind")
    args = parser.parse_args()
    kinds: dict[str, Any] = {
        "reuse": lambda _i: {"templateId": WAREHOUSE, "mode": "telemetry", "rng": SEED},
        "fresh replay": lambda _i: {
            "templateId": WAREHOUSE,
            "mode": "telemetry",
            "rng": SEED,
            "options": {"deterministicRunId": False},
        },
        "simulation": lambda i: {
            "templateId": WAREHOUSE,
            "mode": "simulation",
            "rng": {"kind": "pcg32", "seed": 7000 + i},
        },
        "bundle generation": lambda i: {
            "templateId": WAREHOUSE,
            "mode": "telemetry",
            "rng": SEED,
            "telemetry": {"captureDirectory": f"budget-key-{i}-{time.time_ns()}"},
        },
        "rejected (invalid_json)": b'{"templateId": ',
    }
    with tempfile.TemporaryDirectory(prefix="fsync-budget-") as tmp:
        base = Path(tmp)
        trace_path = base / "strace.txt"
        with running_daemon(
            base, REAL_TEMPLATES, strace_out=trace_path, health_interval=600, workers=1
        ):
            spool = base / "spool"
            trace = Trace(trace_path, base)
            warm = kinds["reuse"]
            run_kind(spool, trace, "warmup", 1, warm)  # source run, bundle, replay run
            table = {
                name: run_kind(spool, trace, f"k{n}", args.k, body)
                for n, (name, body) in enumerate(kinds.items())
            }
    print("| request kind | fsync calls per request | of which |")
    print("| --- | --- | --- |")
    for name, counts in table.items():
        total = sum(counts.values()) / args.k
        detail = ", ".join(f"{cat} {n / args.k:g}" for cat, n in counts.most_common())
        print(f"| {name} | {total:g} | {detail} |")


if __name__ == "__main__":
    main()
