"""A small real processor for exercising the spool without the FlowTime engine.

Select it with ``processor: flowdrop.daemon.testing:counting_processor`` in the config. It
honours a few request parameters — ``sleep`` (seconds), ``fail`` (an error code), ``crash``
(raise a bug) — reports progress like the orchestrator, and records every execution as a file
``<runs_root>/executions/<requestId>.<n>`` so tests can prove a request ran exactly once.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from flowdrop.core.contract import Phase, RunRequest, RunResult, RunSummary, State
from flowdrop.core.errors import ErrorCode, FlowdropError
from flowdrop.daemon.config import Settings
from flowdrop.daemon.processor import Processor, ProgressCallback


def counting_processor(settings: Settings) -> Processor:
    executions = settings.runs_root / "executions"

    def run(request: RunRequest, request_id: str, progress: ProgressCallback) -> RunResult:
        executions.mkdir(parents=True, exist_ok=True)
        marker = executions / f"{request_id}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
        marker.write_text(f"{os.getpid()}\n")
        params = request.parameters
        progress(Phase.SIMULATING, "Simulating…")
        delay = params.get("sleep", 0)
        if isinstance(delay, int | float) and delay > 0:
            time.sleep(float(delay))
        if params.get("crash"):
            msg = "a bug in the processor"
            raise RuntimeError(msg)
        code = params.get("fail")
        if isinstance(code, str):
            raise FlowdropError(ErrorCode(code), f"Asked to fail with {code}.")
        progress(Phase.WRITING, "Writing run…")
        run_id = f"run_{request_id}"
        return RunResult(
            request_id=request_id,
            state=State.SUCCEEDED,
            run=RunSummary(
                run_id=run_id,
                mode=request.mode,
                template_id=request.template_id,
                template_version="1.0.0",
                was_reused=False,
                path=run_id,
            ),
        )

    return run


# --- helpers for tests that drive a real daemon process -----------------------------------------


def wait_until(
    predicate: Callable[[], Any],
    *,
    timeout: float = 20.0,
    interval: float = 0.02,
    message: str = "condition",
) -> Any:
    """Poll ``predicate`` until it returns something truthy; raise TimeoutError at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            msg = f"timed out after {timeout:g} s waiting for {message}"
            raise TimeoutError(msg)
        time.sleep(interval)


def write_config(directory: Path, **overrides: Any) -> Path:
    """A config file for a spool under ``directory`` using the counting processor by default."""
    data: dict[str, Any] = {
        "spool": str(directory / "spool"),
        "runs_root": str(directory / "runs"),
        "telemetry_root": str(directory / "telemetry"),
        "templates": [str(directory / "templates")],
        "processor": "flowdrop.daemon.testing:counting_processor",
        "reconcile_interval": 5,
        "stale_after": 2,
        "drain_timeout": 10,
        "health_interval": 0.5,
        "log_format": "json",
    }
    data.update(overrides)
    data = {k: v for k, v in data.items() if v is not None}
    path = directory / "flowdrop.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def drop_json(inbox: Path, name: str, document: Any) -> Path:
    """Drop a request the recommended way: a hidden temp name in the inbox, then rename."""
    raw = document if isinstance(document, bytes) else json.dumps(document).encode()
    temp = inbox / f".{name}.tmp"
    temp.write_bytes(raw)
    final = inbox / name
    os.rename(temp, final)
    return final


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None


def terminal_status(outbox: Path, request_id: str) -> dict[str, Any] | None:
    status = read_json(outbox / f"{request_id}.status.json")
    if isinstance(status, dict) and status.get("state") in {"succeeded", "failed", "rejected"}:
        return status
    return None


def executions(runs_root: Path, request_id: str) -> int:
    """How many times the counting processor ran ``request_id``."""
    return len(list((runs_root / "executions").glob(f"{request_id}.*")))


# Every DaemonProcess started in this interpreter, so a test run can reap what a failing test
# left running (see :func:`reap_daemons`).
_STARTED: weakref.WeakSet[DaemonProcess] = weakref.WeakSet()


def reap_daemons() -> list[int]:
    """SIGKILL every DaemonProcess still running (after a test that failed before stopping its
    daemons); returns their pids. A stopped (SIGSTOP) one is killed too."""
    reaped = []
    for daemon in list(_STARTED):
        if daemon.proc.poll() is None:
            reaped.append(daemon.pid)
            daemon.kill()
    return reaped


class DaemonProcess:
    """``flowdrop serve --config`` as a subprocess; its log lines land in ``log_path``."""

    def __init__(
        self, config: Path, *, env: dict[str, str] | None = None, args: tuple[str, ...] = ()
    ) -> None:
        self.config = config
        self.log_path = config.parent / f"daemon-{uuid.uuid4().hex[:6]}.log"
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFY_")}
        full_env.pop("WATCHDOG_USEC", None)
        full_env.update(env or {})
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "flowdrop.daemon.cli", "serve", "--config", str(config), *args],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=full_env,
        )
        _STARTED.add(self)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_lines(self) -> list[dict[str, Any]]:
        lines = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                item = json.loads(line)
                if isinstance(item, dict):
                    lines.append(item)
        return lines

    def events(self, name: str) -> list[dict[str, Any]]:
        return [line for line in self.log_lines() if line.get("event") == name]

    def wait_ready(self, timeout: float = 15.0) -> None:
        wait_until(
            lambda: self.events("daemon_ready") or self.proc.poll() is not None,
            timeout=timeout,
            message="daemon_ready",
        )
        if self.proc.poll() is not None:
            msg = f"daemon exited with {self.proc.returncode}: {self.log_path.read_text()}"
            raise RuntimeError(msg)

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def stop(self, timeout: float = 20.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self._log.close()
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self._log.close()


# A four-bin deterministic template (one service, three expr nodes) for fast end-to-end runs.
_MINI_TEMPLATE = """\
schemaVersion: 1
generator: flowtime-sim
metadata:
  id: {id}
  title: Mini {id}
  version: 1.0.0
{key}window:
  start: 2025-01-01T00:00:00Z
  timezone: UTC
grid:
  bins: ${{bins}}
  binSize: 5
  binUnit: minutes
parameters:
  - name: bins
    type: integer
    default: 4
topology:
  nodes:
    - id: OrderService
      kind: service
      semantics:
        arrivals: total_arrivals
        served: total_served
        errors: total_errors
  edges: []
nodes:
  - id: total_arrivals
    kind: expr
    expr: "10 + 0"
  - id: total_served
    kind: expr
    expr: "total_arrivals * 0.9"
  - id: total_errors
    kind: expr
    expr: "total_arrivals - total_served"
outputs:
  - series: total_arrivals
    as: total_arrivals.csv
{extra}"""


def mini_template(template_id: str, key: str | None, extra: str = "") -> str:
    """The text of a tiny valid template; ``key`` becomes ``metadata.captureKey`` when given."""
    capture = f"  captureKey: {key}\n" if key else ""
    return _MINI_TEMPLATE.format(id=template_id, key=capture, extra=extra)


def expensive_template(
    template_id: str, *, bins: int = 10_000, nodes: int = 60, taps: int = 8_000
) -> str:
    """An operator's template that is expensive on purpose: a chain of wide CONV kernels."""
    kernel = ", ".join(["0.0001"] * taps)
    chain = "".join(
        f'  - id: stage_{i}\n    kind: expr\n    expr: "CONV(stage_{i - 1}, [{kernel}])"\n'
        for i in range(1, nodes + 1)
    )
    return (
        f"schemaVersion: 1\nmetadata:\n  id: {template_id}\n  title: Expensive\n"
        f"  version: 1.0.0\nwindow:\n  start: 2025-01-01T00:00:00Z\n  timezone: UTC\n"
        f"grid:\n  bins: {bins}\n  binSize: 1\n  binUnit: minutes\n"
        "topology:\n  nodes:\n    - id: Pipeline\n      kind: service\n      semantics:\n"
        f"        arrivals: stage_0\n        served: stage_{nodes}\n  edges: []\n"
        f'nodes:\n  - id: stage_0\n    kind: expr\n    expr: "10 + 0"\n{chain}'
        f"outputs:\n  - series: stage_{nodes}\n    as: last.csv\n"
    )


def fixed_clock_orchestrator(settings: Settings) -> Processor:
    """The orchestrator with the clock of tests/e2e/test_run_bytes.py (for byte comparisons)."""
    from datetime import UTC, datetime

    from flowdrop.core.orchestration import orchestrator

    fixed = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
    roots = orchestrator.Roots(
        runs=settings.runs_root, telemetry=settings.telemetry_root, templates=settings.templates
    )

    def run(request: RunRequest, request_id: str, progress: ProgressCallback) -> RunResult:
        return orchestrator.orchestrate(
            request, roots, request_id=request_id, progress=progress, clock=lambda: fixed
        )

    return run
