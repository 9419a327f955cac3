"""``flowdrop demo``: the whole loop in a temporary spool, told as a short story.

A real daemon (inotify watcher, worker pool, the core orchestrator) runs in this process on the
bundled example templates. Four request files are dropped one after another, exactly as a user
would drop them, and the status files are followed:

1. a telemetry request whose bundle is missing → generated (simulate → capture → replay);
2. the same again under another requestId → the bundle is reused;
3. a stochastic template without a seed → failed with ``stochastic_template``;
4. a file that is not JSON → rejected with ``invalid_json``, kept in quarantine.

It ends by writing the first run's HTML report to the system's temporary directory (it outlives
the spool) and naming it.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TextIO

from flowdrop.core.contract import RunResult
from flowdrop.daemon import logsetup
from flowdrop.daemon.config import BUNDLED_TEMPLATES, Settings
from flowdrop.daemon.notify import Notifier
from flowdrop.daemon.service import Daemon
from flowdrop.daemon.spool import read_result_file, read_status_file
from flowdrop.daemon.submit import drop

STEPS = (
    ("orders-first.json", "telemetry run; its bundle does not exist yet"),
    ("orders-again.json", "the same run again, under a new requestId"),
    ("stochastic-no-seed.json", "a stochastic template, no rng.seed"),
    ("not-json.json", "a file that is not JSON"),
)
TIMEOUT = 30.0
REPORT_NAME = "flowdrop-demo-report.html"


@dataclass
class Observed:
    request_id: str
    trail: list[str] = field(default_factory=list)
    result: RunResult | None = None
    seconds: float = 0.0


def example_requests() -> Path:
    return Path(str(resources.files("flowdrop") / "examples" / "requests"))


def _follow(settings: Settings, request_id: str, started: float) -> Observed:
    seen = Observed(request_id)
    status_path = settings.spool / "outbox" / f"{request_id}.status.json"
    last_seq = 0
    while time.monotonic() - started < TIMEOUT:
        status = read_status_file(status_path)
        if status is not None and status.seq > last_seq:
            last_seq = status.seq
            label = status.phase.value if status.phase else status.state.value
            step = label
            if status.message and status.phase:
                step += f" ({status.message.rstrip('.')})"
            if seen.trail and seen.trail[-1].split(" (")[0] == label:
                seen.trail[-1] = step  # same phase, newer message
            else:
                seen.trail.append(step)
            if status.state.terminal:
                seen.seconds = time.monotonic() - started
                seen.result = read_result_file(
                    settings.spool / "outbox" / f"{request_id}.result.json"
                )
                return seen
        # A phase of the demo's small templates lasts a few milliseconds: look often.
        time.sleep(0.001)
    seen.trail.append("timed out")
    seen.seconds = time.monotonic() - started
    return seen


def _outcome(result: RunResult | None) -> tuple[str, str]:
    if result is None:
        return "no result", ""
    if result.error is not None:
        return f"{result.state.value}: {result.error.code.value}", result.error.message
    parts = []
    if result.capture is not None:
        key = f" ({result.capture.capture_key})" if result.capture.capture_key else ""
        parts.append(f"bundle {result.capture.status.value}{key}")
    if result.run is not None:
        reused = " (reused)" if result.run.was_reused else ""
        parts.append(f"run {result.run.run_id}{reused}")
    return result.state.value, ", ".join(parts)


def run_demo(out: TextIO, *, keep: Path | None = None) -> int:
    logsetup.quiet()
    base = Path(tempfile.mkdtemp(prefix="flowdrop-demo-")) if keep is None else keep
    settings = Settings(
        spool=base / "spool",
        runs_root=base / "runs",
        telemetry_root=base / "telemetry",
        templates=(BUNDLED_TEMPLATES,),
        instance="demo",
        workers=2,
        reconcile_interval=5.0,
        stale_after=0.0,
        health_interval=60.0,
        log_level="error",  # the worker processes configure logging from the settings
    )
    daemon = Daemon(settings, notifier=Notifier(env={}))
    thread = threading.Thread(target=daemon.run, name="flowdrop-demo-daemon", daemon=True)
    out.write("flowdrop demo: drop request files into an inbox, read status and result files.\n")
    out.write(f"A temporary spool at {base} (removed afterwards); bundled example templates.\n\n")
    begin = time.monotonic()
    thread.start()
    observed: list[tuple[str, Observed]] = []
    failures = 0
    try:
        if not daemon.ready.wait(TIMEOUT):
            out.write("error: internal_error: the daemon did not become ready\n")
            return 1
        for index, (file_name, story) in enumerate(STEPS, start=1):
            source = example_requests() / file_name
            request_id = file_name.removesuffix(".json")
            out.write(f"{index}. inbox/{file_name}: {story}\n")
            started = time.monotonic()
            drop(daemon.spool, source)
            seen = _follow(settings, request_id, started)
            observed.append((file_name, seen))
            state, detail = _outcome(seen.result)
            out.write("   " + " → ".join(seen.trail) + "\n")
            out.write(
                f"   {state}"
                + (f": {detail}" if detail else "")
                + f"  [{seen.seconds * 1000:.0f} ms]\n\n"
            )
        expected = [
            "succeeded",
            "succeeded",
            "failed: stochastic_template",
            "rejected: invalid_json",
        ]
        actual = [_outcome(seen.result)[0] for _name, seen in observed]
        failures = sum(a != e for a, e in zip(actual, expected, strict=True))
        _table(observed, out)
        quarantine = settings.spool / "quarantine"
        deadline = time.monotonic() + 5

        def listed() -> list[str]:
            return sorted(p.name for p in quarantine.iterdir() if not p.name.startswith("."))

        # The rejected file is moved (after its reason file) right after its status is written.
        while not [n for n in listed() if not n.endswith(".reason.json")]:
            if time.monotonic() > deadline:
                break
            time.sleep(0.01)
        quarantined = listed()
        out.write(f"\nspool/outbox: {len(list((settings.spool / 'outbox').iterdir()))} files; ")
        out.write(f"spool/quarantine: {', '.join(quarantined) or '-'}\n")
        _write_report(settings, observed[0][1].result, out)
        out.write(f"done in {time.monotonic() - begin:.1f} s")
        out.write(
            "; every outcome as expected.\n"
            if not failures
            else f"; {failures} unexpected outcome(s).\n"
        )
        return 0 if not failures else 1
    finally:
        daemon.request_stop()
        thread.join(timeout=10)
        if keep is None:
            shutil.rmtree(base, ignore_errors=True)


def _write_report(settings: Settings, result: RunResult | None, out: TextIO) -> None:
    """The first request's telemetry run as a report outside the (removed) temporary spool."""
    from flowdrop.core import report
    from flowdrop.core.errors import FlowdropError

    if result is None or result.run is None:
        return
    target = Path(tempfile.gettempdir()) / REPORT_NAME
    try:
        report.write_report(
            settings.runs_root / result.run.path,
            target,
            runs_root=settings.runs_root,
            telemetry_root=settings.telemetry_root,
        )
    except FlowdropError as exc:
        out.write(f"no run report: {exc.code.value}: {exc.message}\n")
        return
    out.write(f"run report of {result.run.run_id}: open file://{target} in a browser\n")


def _table(observed: list[tuple[str, Observed]], out: TextIO) -> None:
    rows = [("REQUEST", "OUTCOME", "CAPTURE", "TIME")]
    for _name, seen in observed:
        state, _detail = _outcome(seen.result)
        capture = "-"
        if seen.result is not None and seen.result.capture is not None:
            capture = seen.result.capture.status.value
        rows.append((seen.request_id, state, capture, f"{seen.seconds * 1000:.0f} ms"))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        out.write(
            "  " + "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() + "\n"
        )
