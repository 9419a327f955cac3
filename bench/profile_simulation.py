#!/usr/bin/env python3
"""In-process cost of one simulation request: ``orchestrate`` with distinct parameters.

    FLOWTIME_TEMPLATES=../shared/flowtime/templates PYTHONPATH=src \\
        .venv/bin/python bench/profile_simulation.py [--n 15] [--cold] [--profile 40]

Calls :func:`flowdrop.core.orchestration.orchestrator.orchestrate` the way a worker process
does, for ``it-document-processing-continuous`` (288 bins, ~150 nodes, 3 classes) by default,
each request with its own ``invoiceRate`` (as bench/latency.py sends them), so every request
misses the compile cache. ``--cold`` also clears the template cache before each request (the
first request of a template). Prints the median wall time and the orchestrator's phase timings;
``--profile N`` adds a cProfile of all requests (top N by cumulative and by own time). Runs are
written under a temporary directory (``--dir``), removed at the end. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchkit import REAL_TEMPLATES, load_average
from flowdrop.core import engine
from flowdrop.core.contract import RunRequest, State, parse_request
from flowdrop.core.engine import artifacts, compilecache
from flowdrop.core.orchestration import roots as rootsmod
from flowdrop.core.orchestration.orchestrator import Roots, orchestrate
from flowdrop.core.templating.templatecache import shared_cache

ITDOC = "it-document-processing-continuous"
# Phases timed inside orchestrate: (module, attribute) of the call the orchestration makes.
PHASES = {
    "generate": (compilecache, "generate_model"),
    "evaluate": (engine, "evaluate"),
    "render": (artifacts, "render_run"),
    "files": (artifacts, "write_files"),
    "publish": (rootsmod, "publish_staged"),
}
_spent: dict[str, float] = {}


def _timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            _spent[name] = _spent.get(name, 0.0) + time.perf_counter() - started

    return timed


def time_phases() -> None:
    """Wrap the phase calls with timers (publish includes files; it is the staged write)."""
    for name, (module, attribute) in PHASES.items():
        setattr(module, attribute, _timed(name, getattr(module, attribute)))


def request(template_id: str, index: int) -> RunRequest:
    body: dict[str, Any] = {
        "templateId": template_id,
        "mode": "simulation",
        "rng": {"kind": "pcg32", "seed": 1},
    }
    if template_id == ITDOC:
        body["parameters"] = {"invoiceRate": 10 + (index + 1) / 1000}
    else:
        body["rng"]["seed"] = 1 + index
    return parse_request(json.dumps({"requestId": f"p{index}", **body}).encode())


def run_once(roots: Roots, template_id: str, index: int, *, cold: bool) -> dict[str, float]:
    if cold:
        shared_cache().clear()
    _spent.clear()
    started = time.perf_counter()
    result = orchestrate(request(template_id, index), roots, request_id=f"p{index}")
    wall = time.perf_counter() - started
    if result.state is not State.SUCCEEDED:
        msg = f"request {index} did not succeed: {result.error}"
        raise RuntimeError(msg)
    return {"wall": wall, **(result.timings or {}), **_spent}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--template", default=ITDOC)
    parser.add_argument("--n", type=int, default=15, help="measured requests")
    parser.add_argument("--cold", action="store_true", help="clear the template cache each time")
    parser.add_argument("--profile", type=int, default=0, metavar="N", help="cProfile top N")
    parser.add_argument("--dir", default=None, help="where the runs go (e.g. /dev/shm: no disk)")
    args = parser.parse_args()
    if not args.profile:
        time_phases()
    base = Path(tempfile.mkdtemp(prefix="flowdrop-profile-", dir=args.dir))
    try:
        roots = Roots(base / "runs", base / "telemetry", (REAL_TEMPLATES,))
        roots.runs.mkdir()
        roots.telemetry.mkdir()
        run_once(roots, args.template, -1, cold=args.cold)  # imports, lookups, first parse
        profiler = cProfile.Profile() if args.profile else None
        samples = []
        for index in range(args.n):
            if profiler is not None:
                profiler.enable()
            samples.append(run_once(roots, args.template, index, cold=args.cold))
            if profiler is not None:
                profiler.disable()
        print(f"{args.template}, {'cold' if args.cold else 'warm'} template cache, n={args.n}")
        for key in samples[0]:
            values = [s.get(key, 0.0) * 1000 for s in samples]
            print(f"  {key:<10} median {statistics.median(values):7.1f} ms  min {min(values):7.1f}")
        print(f"  {load_average()}, pid {os.getpid()}")
        if profiler is not None:
            stats = pstats.Stats(profiler)
            stats.sort_stats("cumulative").print_stats(args.profile)
            stats.sort_stats("tottime").print_stats(args.profile)
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
