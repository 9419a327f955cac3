#!/usr/bin/env python3
"""Auto-capture benchmark: cold (simulate + capture + replay) vs warm (reuse bundle + replay).

For each real FlowTime template with a ``metadata.captureKey``:

- cold: fresh roots, so the request simulates, captures, publishes the bundle and replays;
- warm: the bundle exists; the request (a new runId) reuses it and only replays;
- hit: the same request again (deterministic run id): bundle and run are both reused.

Warm requests must do no simulation and no capture work: the script checks the result
(``capture.status == "reused"``, no ``simulate``/``capture`` timings) and that the bundle and the
source run are byte-for-byte untouched (inode and mtime of every file), and exits 1 otherwise.

    .venv/bin/python bench/autocapture.py [--repeat N] [--templates DIR]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import structlog

from flowdrop.core import engine
from flowdrop.core.contract import CaptureStatus, RunRequest, RunResult
from flowdrop.core.orchestration.orchestrator import Roots, orchestrate

DEFAULT_TEMPLATES = Path(__file__).resolve().parents[2] / "shared" / "flowtime" / "templates"


def _request(template_id: str, run_id: str | None = None) -> RunRequest:
    body: dict[str, object] = {
        "templateId": template_id,
        "mode": "telemetry",
        "rng": {"kind": "pcg32", "seed": 123},
    }
    if run_id is not None:
        body["options"] = {"runId": run_id}
    return RunRequest.model_validate_json(json.dumps(body))


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_ino, p.stat().st_mtime_ns) for p in root.rglob("*")}


def _timed(request: RunRequest, roots: Roots) -> tuple[float, RunResult]:
    started = time.perf_counter()
    result = orchestrate(request, roots, request_id="bench")
    elapsed = time.perf_counter() - started
    if result.error is not None:
        raise SystemExit(f"{request.template_id}: {result.error.code}: {result.error.message}")
    return elapsed, result


def bench_template(template_id: str, templates: Path, repeat: int) -> dict[str, float]:
    cold, warm, hit, validate = [], [], [], []
    for i in range(repeat):
        with tempfile.TemporaryDirectory(prefix="flowdrop-bench-") as tmp:
            base = Path(tmp)
            (base / "runs").mkdir()
            (base / "telemetry").mkdir()
            roots = Roots(base / "runs", base / "telemetry", (templates,))
            seconds, first = _timed(_request(template_id), roots)
            assert first.capture is not None and first.capture.status is CaptureStatus.GENERATED
            cold.append(seconds)
            validate.append(first.timings["validate"])
            source = first.capture.source_run_id
            assert source is not None
            bundle_before = _snapshot(roots.telemetry)
            source_before = _snapshot(roots.runs / source)
            seconds, again = _timed(_request(template_id, run_id=f"warm-{i}"), roots)
            warm.append(seconds)
            assert again.capture is not None and again.capture.status is CaptureStatus.REUSED
            assert not {"simulate", "capture"} & again.timings.keys(), again.timings
            assert _snapshot(roots.telemetry) == bundle_before, "warm request touched the bundle"
            assert _snapshot(roots.runs / source) == source_before, "warm request re-simulated"
            seconds, third = _timed(_request(template_id), roots)
            hit.append(seconds)
            assert third.run is not None and third.run.was_reused
    return {
        "cold": statistics.median(cold),
        "warm": statistics.median(warm),
        "hit": statistics.median(hit),
        "validate": statistics.median(validate),
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--templates",
        type=Path,
        default=Path(os.environ.get("FLOWTIME_TEMPLATES", DEFAULT_TEMPLATES)),
    )
    args = parser.parse_args(argv)
    # This script is an edge: keep the per-request lifecycle log lines out of the table.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    rows = []
    for path in sorted(args.templates.glob("*.yaml")):
        template = engine.load_template(path)
        if template.capture_key is None:
            continue
        rows.append((template.id, bench_template(template.id, args.templates, args.repeat)))
    header = (
        f"{'template':36} {'cold s':>8} {'warm s':>8} {'cold/warm':>9} {'hit s':>8} {'lookup s':>8}"
    )
    print(
        f"median of {args.repeat} runs each; warm = bundle reused + replay, hit = run reused, "
        "lookup = template lookup + model validation (part of every request)"
    )
    print(header)
    print("-" * len(header))
    for name, r in rows:
        ratio = r["cold"] / r["warm"]
        print(
            f"{name:36} {r['cold']:8.3f} {r['warm']:8.3f} {ratio:9.2f} {r['hit']:8.3f} "
            f"{r['validate']:8.3f}"
        )
    print(
        "warm requests did no simulation and no capture (checked: status, timings, inodes/mtimes)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
