"""Worlds for the reliability suite, and the one invariant checker every scenario ends with.

(Fixtures live in conftest.py; test modules import the classes from here.)

A :class:`World` is a directory ``base/`` holding the configured roots (``spool``, ``runs``,
``telemetry``, ``templates``), the daemon's config and logs, and an ``outside/`` tree that no
daemon may touch: symlinks planted inside the roots and the inbox point into it. The world
records every request file it drops (:class:`Drop`) so :meth:`World.check` can prove

- **I1** every fully dropped request ends with exactly one terminal outcome (a terminal status
  plus a result for an id, or a quarantine entry), and no file is left in ``inbox``/``work``;
- **I2** every outbox file parses and validates against the contract models; every published
  run has its run.json/manifest.json/series index; every bundle validates (manifest + hashes);
- **I3** a requestId ran at most once (``counting_processor`` execution records; for the real
  orchestrator, bundle generations per captureKey from the daemons' logs);
- **I4** every quarantined file has a reason file with a known ErrorCode;
- **I5** nothing outside the roots was created, changed or followed (a lstat+content hash of
  ``base`` minus the roots, taken before the daemon starts and compared at the end).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
import subprocess
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flowdrop.core.contract import QuarantineReason, RunResult, StatusFile
from flowdrop.core.errors import ErrorCode
from flowdrop.core.fs.storage import TEMP_PREFIX
from flowdrop.core.telemetry.bundle import validate_bundle
from flowdrop.daemon.spool import REASON_SUFFIX, is_request_name
from flowdrop.daemon.testing import (
    DaemonProcess,
    drop_json,
    read_json,
    terminal_status,
    wait_until,
    write_config,
)

ROOT_NAMES = ("spool", "runs", "telemetry", "templates")
KNOWN_CODES = {code.value for code in ErrorCode}
TERMINAL = {"succeeded", "failed", "rejected"}

# A tiny deterministic template with a captureKey: simulate, capture and replay take ~0.1 s.
TINY_TEMPLATE = """\
schemaVersion: 1
generator: flowtime-sim
metadata:
  id: {id}
  title: Tiny {id}
  version: 1.0.0
  captureKey: {key}
window:
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
    - id: Desk
      kind: service
      semantics:
        arrivals: arrivals
        served: served
        errors: errors
  edges: []
nodes:
  - id: arrivals
    kind: expr
    expr: "10 + 0"
  - id: served
    kind: expr
    expr: "arrivals * 0.8"
  - id: errors
    kind: expr
    expr: "arrivals - served"
outputs:
  - series: arrivals
    as: arrivals.csv
"""


def request_body(request_id: str | None, **params: Any) -> dict[str, Any]:
    """A counting-processor request (simulation mode, template ``t``)."""
    body: dict[str, Any] = {"schemaVersion": 1, "templateId": "t", "mode": "simulation"}
    if request_id is not None:
        body["requestId"] = request_id
    if params:
        body["parameters"] = params
    return body


# --- hashing what must not change ---------------------------------------------------------------


def tree_fingerprint(base: Path, exclude: set[str]) -> dict[str, tuple[Any, ...]]:
    """lstat + content digest of everything under ``base`` except top-level names in ``exclude``.

    Links are never followed (their target text is recorded). ctime is left out on purpose: the
    daemon renaming an attacker's hard link in its own spool changes the shared inode's ctime.
    """
    out: dict[str, tuple[Any, ...]] = {}
    for current, dirs, files in os.walk(base, followlinks=False):
        rel_dir = os.path.relpath(current, base)
        if rel_dir == ".":
            dirs[:] = [d for d in dirs if d not in exclude]
            files = [f for f in files if f not in exclude and not _is_run_artifact(f)]
        for name in [*dirs, *files]:
            path = Path(current) / name
            rel = os.path.normpath(os.path.join(rel_dir, name))
            info = os.lstat(path)
            digest: str | None = None
            if stat.S_ISREG(info.st_mode) and info.st_size <= 1 << 20:
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
            elif stat.S_ISLNK(info.st_mode):
                digest = os.readlink(path)
            size = info.st_size if not stat.S_ISDIR(info.st_mode) else None
            out[rel] = (
                stat.S_IFMT(info.st_mode),
                info.st_mode & 0o7777,
                size,
                info.st_mtime_ns,
                digest,
            )
    return out


def _is_run_artifact(name: str) -> bool:
    return name.startswith("daemon-") or name in {"flowdrop.yaml", "flowdrop-b.yaml"}


# --- the world --------------------------------------------------------------------------------


@dataclass
class Drop:
    """One file dropped into the inbox and where it must end."""

    name: str
    request_id: str | None  # the id an outbox entry is expected under (None: quarantine only)
    dest: str  # "done" | "quarantine" | "any" (either) | "ignored" (not a request name)
    state: str | None = None  # expected terminal state of request_id, when known
    code: str | None = None  # expected error code (result or reason), when known
    runs: int = 1  # executions this drop itself may cause (0 for refusals and duplicates)
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class Report:
    """What :meth:`World.check` saw, for assertions and for the docs table."""

    done: int = 0
    quarantined: int = 0
    outbox_files: int = 0
    runs: int = 0
    bundles: int = 0
    executions: Counter[str] = field(default_factory=Counter)
    states: Counter[str] = field(default_factory=Counter)


class World:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.spool = base / "spool"
        self.inbox = self.spool / "inbox"
        self.outbox = self.spool / "outbox"
        self.quarantine = self.spool / "quarantine"
        self.done = self.spool / "done"
        self.runs = base / "runs"
        self.telemetry = base / "telemetry"
        self.templates = base / "templates"
        self.outside = base / "outside"
        self.drops: list[Drop] = []
        self.daemons: list[DaemonProcess] = []
        self.on_tmpfs = False
        self.planted: set[str] = set()  # dirs a test put into a root (not published by us)
        for path in (self.inbox, self.runs, self.telemetry, self.templates):
            path.mkdir(parents=True, exist_ok=True)
        self._plant_outside()
        self.before = self.fingerprint()

    # --- set-up ------------------------------------------------------------------------------

    def _plant_outside(self) -> None:
        """A tree no daemon may touch, and symlinks to it planted in the roots."""
        out = self.outside
        (out / "bundle").mkdir(parents=True)
        (out / "secret.json").write_text(json.dumps(request_body("secret")))
        (out / "passwd").write_text("root:x:0:0::/root:/bin/sh\n")
        (out / "bundle" / "manifest.json").write_text('{"grid": {"bins": 4}}')
        (out / "template.yaml").write_text(TINY_TEMPLATE.format(id="outside-tpl", key="outkey"))
        (out / "runs-target").mkdir()
        # Symlinks inside the roots that lead outside: captureKey/runId/template names.
        os.symlink(out / "bundle", self.telemetry / "evil-key")
        os.symlink(out / "runs-target", self.runs / "evil-run")
        os.symlink(out, self.telemetry / "escape")
        os.symlink(out / "template.yaml", self.templates / "zz-link.yaml")

    def fingerprint(self) -> dict[str, tuple[Any, ...]]:
        return tree_fingerprint(self.base, set(ROOT_NAMES))

    def add_tiny_templates(self, *ids_and_keys: tuple[str, str]) -> None:
        for template_id, key in ids_and_keys:
            text = TINY_TEMPLATE.format(id=template_id, key=key)
            (self.templates / f"{template_id}.yaml").write_text(text)

    def config(self, name: str = "flowdrop.yaml", **overrides: Any) -> Path:
        path = write_config(self.base, **overrides)
        if name != path.name:
            path = path.rename(path.with_name(name))
        return path

    def start(
        self, config: Path | None = None, *, env: dict[str, str] | None = None, wait: bool = True
    ) -> DaemonProcess:
        daemon = DaemonProcess(config or self.base / "flowdrop.yaml", env=env)
        self.daemons.append(daemon)
        if wait:
            daemon.wait_ready(timeout=60)
        return daemon

    # --- dropping ----------------------------------------------------------------------------

    def drop(
        self,
        request_id: str,
        *,
        name: str | None = None,
        body: dict[str, Any] | None = None,
        dest: str = "done",
        state: str | None = "succeeded",
        code: str | None = None,
        runs: int = 1,
        **params: Any,
    ) -> Drop:
        """Drop a valid request the recommended way (temp name, then rename)."""
        file_name = name or f"{request_id}.json"
        drop_json(
            self.inbox, file_name, body if body is not None else request_body(request_id, **params)
        )
        item = Drop(file_name, request_id, dest, state, code, runs, dict(params))
        self.drops.append(item)
        return item

    def drop_raw(
        self,
        name: str,
        raw: bytes,
        *,
        request_id: str | None,
        dest: str = "quarantine",
        state: str | None = "rejected",
        code: str | None = None,
    ) -> Drop:
        """Drop arbitrary bytes (atomically) under ``name``."""
        drop_json(self.inbox, name, raw)
        item = Drop(name, request_id, dest, state, code, 0)
        self.drops.append(item)
        return item

    def expect(self, item: Drop) -> Drop:
        """Record a file placed in the inbox by other means (links, FIFOs, ...)."""
        self.drops.append(item)
        return item

    # --- waiting -----------------------------------------------------------------------------

    def pending(self) -> list[str]:
        """Request names still in the inbox or in any work dir."""
        left = [n for n in os.listdir(self.inbox) if is_request_name(n)]
        work = self.spool / "work"
        if work.is_dir():
            for directory in work.iterdir():
                with contextlib.suppress(OSError):
                    left.extend(f"{directory.name}/{n}" for n in os.listdir(directory))
        ignored = {d.name for d in self.drops if d.dest == "ignored"}
        return [n for n in left if n not in ignored]

    def settled(self) -> bool:
        if self.pending():
            return False
        placed = _count_files(self.done) + _count_quarantined(self.quarantine)
        if placed < sum(1 for d in self.drops if d.dest in {"done", "quarantine", "any"}):
            return False
        ids = {d.request_id for d in self.drops if d.request_id and d.state and d.dest != "ignored"}
        return all(terminal_status(self.outbox, i) is not None for i in ids)

    def wait_settled(self, timeout: float = 60.0) -> None:
        def check() -> bool:
            for daemon in self.daemons:
                if daemon.proc.poll() not in (None, 0, -9, -15):
                    msg = f"daemon exited with {daemon.proc.returncode}: {daemon.log_path.read_text()[-4000:]}"
                    raise AssertionError(msg)
            return self.settled()

        try:
            wait_until(check, timeout=timeout, interval=0.1, message="the spool to settle")
        except TimeoutError:
            ids = {d.request_id for d in self.drops if d.request_id and d.state}
            missing = sorted(i for i in ids if terminal_status(self.outbox, i) is None)
            errors = [
                {k: e.get(k) for k in ("event", "item", "exception", "requestId")}
                for daemon in self.daemons
                for e in daemon.log_lines()
                if e.get("level") in {"error", "critical"}
            ]
            msg = (
                f"not settled after {timeout:g} s; pending {self.pending()[:20]}, "
                f"no terminal status {missing[:20]}, errors logged {errors[:5]}"
            )
            raise AssertionError(msg) from None

    # --- the invariants ----------------------------------------------------------------------

    def check(
        self,
        *,
        counting: bool = True,
        run_allowance: dict[str, int] | None = None,
        strict_codes: bool = True,
    ) -> Report:
        """Assert I1-I5 over the whole world; returns what was seen."""
        report = Report()
        self._check_i1(report)
        self._check_i2(report)
        self._check_i3(report, counting=counting, allowance=run_allowance or {})
        self._check_i4(report, strict_codes=strict_codes)
        self._check_i5()
        return report

    def check_partial(
        self, *, counting: bool = True, run_allowance_all: int | None = None
    ) -> Report:
        """I2-I5 at an arbitrary point (e.g. right after a SIGKILL): nothing torn, nothing outside."""
        report = Report()
        allowance = {}
        if run_allowance_all is not None:
            allowance = {d.request_id: run_allowance_all for d in self.drops if d.request_id}
        self._check_i2(report)
        self._check_i3(report, counting=counting, allowance=allowance, finished=False)
        self._check_i4(report, strict_codes=True)
        self._check_i5()
        return report

    def _check_i1(self, report: Report) -> None:
        assert self.pending() == [], f"I1: files left unprocessed: {self.pending()[:10]}"
        report.done = _count_files(self.done)
        report.quarantined = _count_quarantined(self.quarantine)
        want_done = sum(1 for d in self.drops if d.dest == "done")
        want_q = sum(1 for d in self.drops if d.dest == "quarantine")
        want_any = sum(1 for d in self.drops if d.dest == "any")
        seen = (report.done, report.quarantined)
        assert report.done >= want_done and report.quarantined >= want_q, (seen, want_done, want_q)
        assert sum(seen) == want_done + want_q + want_any, (
            f"I1: done/quarantine hold {seen} files, expected {want_done}/{want_q} (+{want_any} either)"
        )
        by_id: dict[str, list[Drop]] = {}
        for item in self.drops:
            if item.request_id and item.state:
                by_id.setdefault(item.request_id, []).append(item)
        for request_id, items in by_id.items():
            status = read_json(self.outbox / f"{request_id}.status.json")
            result = read_json(self.outbox / f"{request_id}.result.json")
            assert isinstance(status, dict) and status.get("state") in TERMINAL, (
                f"I1: {request_id} has no terminal status: {status}"
            )
            assert isinstance(result, dict), f"I1: {request_id} has no result"
            assert status["state"] == result["state"], f"I1: {request_id} status/result disagree"
            report.states[result["state"]] += 1
            first = items[0]
            if first.state is not None:
                assert result["state"] == first.state, (
                    f"I1: {request_id} ended {result['state']}, expected {first.state}: {result}"
                )
            if first.code is not None and first.dest == "done":
                assert (result.get("error") or {}).get("code") == first.code, (request_id, result)

    def _check_i2(self, report: Report) -> None:
        base_text = str(self.base)
        for path in sorted(self.outbox.iterdir()) if self.outbox.is_dir() else []:
            if path.name.startswith("."):
                continue  # a temp left by a SIGKILL: never under a final name
            raw = path.read_bytes()
            assert base_text.encode() not in raw, f"I2: absolute path in {path.name}"
            if path.name.endswith(".status.json"):
                model: Any = StatusFile.model_validate_json(raw, strict=False)
            elif path.name.endswith(".result.json"):
                model = RunResult.model_validate_json(raw, strict=False)
            else:
                raise AssertionError(f"I2: unexpected outbox file {path.name}")
            assert path.name.startswith(model.request_id + "."), path.name
            report.outbox_files += 1
        for run_dir in _visible_dirs(self.runs):
            if run_dir.name == "executions" or run_dir.name in self.planted:
                continue
            for part in ("run.json", "manifest.json", "series/index.json"):
                assert json.loads((run_dir / part).read_bytes()) is not None, (run_dir, part)
            report.runs += 1
        for bundle in _visible_dirs(self.telemetry):
            if bundle.name in self.planted:
                continue
            validate_bundle(bundle, bundle.name)
            assert json.loads((bundle / "bundle.json").read_bytes())["captureKey"] == bundle.name
            report.bundles += 1

    def _check_i3(
        self, report: Report, *, counting: bool, allowance: dict[str, int], finished: bool = True
    ) -> None:
        executions = self.runs / "executions"
        if counting and executions.is_dir():
            for marker in os.listdir(executions):
                report.executions[marker.split(".", 1)[0]] += 1
            allowed: Counter[str] = Counter()
            for item in self.drops:
                if item.request_id:
                    allowed[item.request_id] = max(allowed[item.request_id], item.runs)
            for request_id, count in report.executions.items():
                limit = allowance.get(request_id, allowed.get(request_id, 0))
                assert count <= limit, f"I3: {request_id} ran {count} times (allowed {limit})"
            for request_id, limit in allowed.items():
                state = (read_json(self.outbox / f"{request_id}.result.json") or {}).get("state")
                if finished and limit and state == "succeeded":
                    assert report.executions[request_id] >= 1, f"I3: {request_id} never ran"
        generated: Counter[str] = Counter()
        for daemon in self.daemons:
            for event in daemon.events("autocapture_succeeded"):
                generated[str(event.get("captureKey"))] += 1
        for key, count in generated.items():
            assert count <= allowance.get(f"capture:{key}", 1), (
                f"I3: bundle {key} generated {count}x"
            )

    def _check_i4(self, report: Report, *, strict_codes: bool) -> None:
        names = set(os.listdir(self.quarantine)) if self.quarantine.is_dir() else set()
        expected_codes = {d.name: d.code for d in self.drops if d.dest == "quarantine" and d.code}
        names = {n for n in names if not n.startswith(TEMP_PREFIX)}  # a writer's temp, not final
        for name in sorted(names):
            if name.endswith(REASON_SUFFIX):
                continue
            reason_path = self.quarantine / (name + REASON_SUFFIX)
            assert reason_path.is_file(), f"I4: {name!r} has no reason file"
            reason = QuarantineReason.model_validate_json(reason_path.read_bytes(), strict=False)
            assert reason.error.code.value in KNOWN_CODES
            want = expected_codes.get(reason.file_name)
            if strict_codes and want is not None:
                assert reason.error.code.value == want, (name, reason.error)
        for name in names:
            if name.endswith(REASON_SUFFIX):
                data = json.loads((self.quarantine / name).read_bytes())
                assert data["error"]["code"] in KNOWN_CODES, (name, data)

    def _check_i5(self) -> None:
        after = self.fingerprint()
        changed = sorted(
            key for key in set(self.before) | set(after) if self.before.get(key) != after.get(key)
        )
        assert changed == [], f"I5: changed outside the roots: {changed[:20]}"

    # --- teardown ----------------------------------------------------------------------------

    def close(self) -> None:
        for daemon in self.daemons:
            with contextlib.suppress(Exception):
                daemon.kill()


def _count_files(directory: Path) -> int:
    try:
        return sum(1 for name in os.listdir(directory) if not name.startswith("."))
    except FileNotFoundError:
        return 0


def _count_quarantined(directory: Path) -> int:
    try:
        return sum(
            1
            for name in os.listdir(directory)
            if not name.endswith(REASON_SUFFIX) and not name.startswith(TEMP_PREFIX)
        )
    except FileNotFoundError:
        return 0


def _visible_dirs(root: Path) -> Iterator[Path]:
    if not root.is_dir():
        return
    for entry in sorted(root.iterdir()):
        if entry.name.startswith(".") or entry.is_symlink() or not entry.is_dir():
            continue
        yield entry


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def record(scenario: str, data: dict[str, Any]) -> None:
    """Print a measured number (``-s`` shows it) and append it to $FLOWDROP_RELIABILITY_REPORT."""
    print(f"\nRELIABILITY {scenario} {json.dumps(data, sort_keys=True)}")
    out = os.environ.get("FLOWDROP_RELIABILITY_REPORT")
    if out:
        with open(out, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"scenario": scenario, **data}, sort_keys=True) + "\n")


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[bool]:
    """Mount a tmpfs of ``size`` on ``path``; yields False (plain directory) if not permitted."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = (
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)],
            capture_output=True,
            check=False,
        ).returncode
        == 0
    )
    try:
        yield mounted
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)
