"""A reliability :class:`World` whose spool, runs root and telemetry root live on LazyFS.

Templates, configs, daemon logs and the ``outside/`` tree stay on the real disk beside it (they
are configuration and evidence, not state the daemon must keep). On top of the reliability
suite's I1-I5 (``tests/reliability/reliability_world.py``) this adds what only a power cut can
break:

- **P1** nothing torn: every ``outbox/*.json`` parses (I2), every ledger entry parses; every run directory has a
  ``run.json`` and ``manifest.json`` that parse and series whose SHA-256 match
  ``manifest.json.seriesHashes``; every bundle's ``manifest.json``/``bundle.json`` parse and its
  files match their hashes;
- **P2** nothing visible is lost: results, run directories and bundles a reader could see just
  before a cut are still there after it, byte-identical (results) or verifying (runs, bundles);
- **P3** every ``succeeded`` result names a run that verifies;
- **P4** after the restart every request ends exactly once with the outcome it would have had
  (I1), never ``interrupted`` (attempts allowed exceed the cuts);
- **P5** one bundle per captureKey: generated at most once (daemon logs and results), no half
  bundle, and the crash debris (``.tmp-*`` staging and temporaries) is swept.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flowdrop.core.fs import storage
from flowdrop.core.fs.storage import ASIDE_MARK, TEMP_PREFIX
from flowdrop.core.telemetry.bundle import validate_bundle
from flowdrop.daemon.spool import RESULT_SUFFIX, STATUS_SUFFIX, Spool
from flowdrop.daemon.submit import drop as submit_drop
from flowdrop.daemon.testing import DaemonProcess, drop_json, mini_template, read_json
from tests.powerloss.lazyfs import LazyFS
from tests.reliability.reliability_world import Drop, Report, World

TEMPLATE_ID = "pl"  # one tiny template, no captureKey: telemetry requests name their bundle
SEED_KEY = "base"  # a bundle generated before the first cut, replayed and reused afterwards


@dataclass
class Snapshot:
    """What a reader could see at one moment (taken after SIGKILL, before the cut)."""

    results: dict[str, bytes] = field(default_factory=dict)
    statuses: dict[str, dict[str, Any]] = field(default_factory=dict)
    runs: set[str] = field(default_factory=set)
    bundles: set[str] = field(default_factory=set)
    work: list[str] = field(default_factory=list)


@dataclass
class Tally:
    """Numbers for the docs table."""

    restarts: int = 0
    in_flight: Counter[str] = field(default_factory=Counter)  # state/phase seen at a cut
    outcomes: Counter[str] = field(default_factory=Counter)
    kinds: Counter[str] = field(default_factory=Counter)
    debris: int = 0  # crash temporaries found (and swept) at the end
    restorable: int = 0  # replaced trees found aside after a crash (put back at restart)


class PowerWorld(World):
    """``base`` on the real disk; the three roots on ``fs.mnt``."""

    def __init__(self, base: Path, fs: LazyFS, sources: Path) -> None:
        super().__init__(base)
        self.fs = fs
        self.spool = fs.mnt / "spool"
        self.inbox = self.spool / "inbox"
        self.outbox = self.spool / "outbox"
        self.quarantine = self.spool / "quarantine"
        self.done = self.spool / "done"
        self.runs = fs.mnt / "runs"
        self.telemetry = fs.mnt / "telemetry"
        self.sources = sources  # request bodies for durable submits (outside the fingerprint)
        self.sources.mkdir(parents=True, exist_ok=True)
        for path in (self.inbox, self.runs, self.telemetry):
            path.mkdir(parents=True, exist_ok=True)
        (self.templates / f"{TEMPLATE_ID}.yaml").write_text(mini_template(TEMPLATE_ID, None))
        self.tally = Tally()
        self.seen_results: dict[str, bytes] = {}
        self.acknowledged: set[str] = set()  # ids whose status a reader saw before some cut
        self.fragile: dict[str, Drop] = {}  # dropped without fsync (README's cp + mv recipe)
        self._counter = 0
        self.forced: Counter[str] = Counter()  # forceCapture requests per captureKey
        self.seen_runs: set[str] = set()  # run directories a reader saw at some cut
        self.seen_bundles: set[str] = set()
        self.exchange = _can_exchange(fs.mnt)

    def capture_allowance(self) -> dict[str, int]:
        """Generations allowed per captureKey: one, plus one per forceCapture request."""
        return {f"capture:{key}": 1 + n for key, n in self.forced.items()}

    # --- configuration and daemons -----------------------------------------------------------

    def configure(self, **overrides: Any) -> Path:
        settings: dict[str, Any] = {
            "spool": str(self.spool),
            "runs_root": str(self.runs),
            "telemetry_root": str(self.telemetry),
            "processor": None,  # the real orchestrator
            "workers": 2,
            "max_attempts": 30,  # more than the cuts: interrupted is never the right outcome
            "stale_after": 1,
            "reconcile_interval": 1,
        }
        settings.update(overrides)
        return self.config(**settings)

    def start(
        self, config: Path | None = None, *, env: dict[str, str] | None = None, wait: bool = True
    ) -> DaemonProcess:
        with self.fs.guard("starting the daemon"):
            daemon = super().start(config, env=env, wait=wait)
        self.tally.restarts += 1
        return daemon

    def kill_daemons(self) -> None:
        """SIGKILL every daemon *and its worker processes* and wait until none can write: the
        power goes for all of them at once, before the cut drops what they did not sync."""
        for daemon in self.daemons:
            tree = _process_tree(daemon.pid) if daemon.proc.poll() is None else []
            for pid in tree:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            daemon.kill()
            deadline = time.monotonic() + 10
            while any(_alive(pid) for pid in tree):
                assert time.monotonic() < deadline, f"processes of a killed daemon live on: {tree}"
                time.sleep(0.01)

    def settled(self) -> bool:
        self.fs.assert_alive("waiting for the spool to settle")
        return super().settled()

    # --- requests ----------------------------------------------------------------------------

    def _next(self, prefix: str) -> str:
        self._counter += 1
        return f"{prefix}{self._counter}"

    def submit(self, body: dict[str, Any] | bytes, name: str, drop: Drop, kind: str) -> Drop:
        """A durable drop, the way ``flowdrop submit`` does it (temp, fsync, rename, dir fsync)."""
        source = self.sources / name
        source.write_bytes(body if isinstance(body, bytes) else json.dumps(body).encode())
        submit_drop(Spool(self.spool, "tests"), source, name=name)
        self.drops.append(drop)
        self.tally.kinds[kind] += 1
        return drop

    def body(self, request_id: str, mode: str, **extra: Any) -> dict[str, Any]:
        return {"requestId": request_id, "templateId": TEMPLATE_ID, "mode": mode, **extra}

    def seed(self) -> None:
        """Before any cut: the bundle replays use, and a simulation run the reuses hit."""
        rid = self._next("seed-bundle-")
        self.submit(
            self.body(rid, "telemetry", telemetry={"captureDirectory": SEED_KEY}),
            f"{rid}.json",
            Drop(f"{rid}.json", rid, "done", "succeeded"),
            "telemetry, bundle generated",
        )
        rid = self._next("seed-sim-")
        self.submit(
            self.body(rid, "simulation", parameters={"bins": 6}),
            f"{rid}.json",
            Drop(f"{rid}.json", rid, "done", "succeeded"),
            "simulation",
        )

    def drop_kind(self, kind: str, rng: random.Random) -> Drop:
        rid = self._next("r")
        name = f"{rid}.json"
        if kind == "simulation":
            body = self.body(rid, "simulation", parameters={"bins": 7 + self._counter})
        elif kind == "simulation, reused run":
            body = self.body(rid, "simulation", parameters={"bins": 6})
        elif kind == "telemetry, bundle generated":
            key = f"k{rid}"
            body = self.body(rid, "telemetry", telemetry={"captureDirectory": key})
        elif kind == "telemetry, fresh replay":
            body = self.body(
                rid,
                "telemetry",
                telemetry={"captureDirectory": SEED_KEY},
                options={"deterministicRunId": False},
            )
        elif kind == "telemetry, reused run":
            body = self.body(rid, "telemetry", telemetry={"captureDirectory": SEED_KEY})
        elif kind == "rejected: invalid_json":
            raw = b'{"requestId": "' + rid.encode() + b'", "templateId": '
            return self.submit(raw, name, Drop(name, rid, "quarantine", "rejected"), kind)
        elif kind == "rejected: invalid_request":
            body = self.body(rid, "simulation", colour="blue")
            drop = Drop(name, rid, "quarantine", "rejected", "invalid_request")
            return self.submit(body, name, drop, kind)
        elif kind == "failed: template_not_found":
            body = {"requestId": rid, "templateId": "no-such-template", "mode": "simulation"}
            drop = Drop(name, rid, "done", "failed", "template_not_found")
            return self.submit(body, name, drop, kind)
        elif kind == "simulation, cp+mv drop without fsync":
            body = self.body(rid, "simulation", parameters={"bins": 7 + self._counter})
            drop_json(self.inbox, name, body)  # README's recipe: no fsync anywhere
            drop = Drop(name, rid, "done", "succeeded")
            self.drops.append(drop)
            self.fragile[rid] = drop
            self.tally.kinds[kind] += 1
            return drop
        else:  # pragma: no cover - a typo in KINDS
            raise AssertionError(kind)
        return self.submit(body, name, Drop(name, rid, "done", "succeeded"), kind)

    # --- the moment of the cut -----------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        """Everything a reader sees now (call with the daemons dead, before clear-cache)."""
        snap = Snapshot()
        with self.fs.guard("the pre-cut snapshot"):
            for path in _listdir(self.outbox):
                if path.name.startswith("."):
                    continue
                with contextlib.suppress(FileNotFoundError):
                    raw = path.read_bytes()
                    if path.name.endswith(RESULT_SUFFIX):
                        snap.results[path.name] = raw
                    elif path.name.endswith(STATUS_SUFFIX):
                        status = json.loads(raw)
                        snap.statuses[status["requestId"]] = status
            snap.runs = {p.name for p in _visible_dirs(self.runs)}
            snap.bundles = {p.name for p in _visible_dirs(self.telemetry)}
            work = self.spool / "work"
            for directory in _listdir(work):
                snap.work.extend(p.name for p in _listdir(directory))
        for request_id, status in snap.statuses.items():
            self.acknowledged.add(request_id)
            if status["state"] not in {"succeeded", "failed", "rejected"}:
                self.tally.in_flight[f"{status['state']}/{status.get('phase') or '-'}"] += 1
        self.tally.in_flight["claimed, in work/"] += len(snap.work)
        self.seen_runs |= snap.runs
        self.seen_bundles |= snap.bundles
        self.seen_results.update(snap.results)
        return snap

    def after_cut(self, before: Snapshot | None, when: str) -> None:
        """P1-P3 and P5 (no half bundle) on what survived, before any daemon runs again."""
        with self.fs.guard(f"the invariants {when}"):
            self.check_power(before, when)
            self._settle_fragile_expectations()

    def check_power(
        self, before: Snapshot | None, when: str, *, at_end: bool = False
    ) -> dict[str, int]:
        # I2 (outbox parses, bundles validate), I3 (generations per key), I4, I5
        report = Report()
        self._check_i2(report)
        self._check_i3(report, counting=False, allowance=self.capture_allowance(), finished=False)
        self._check_i4(report, strict_codes=True)
        self._check_i5()
        runs = {p.name: p for p in _visible_dirs(self.runs)}
        for run_dir in runs.values():
            verify_run(run_dir)
        bundles = {p.name: p for p in _visible_dirs(self.telemetry)}
        for key, bundle in bundles.items():
            verify_bundle(bundle, key)
        # The ledger decides duplicates and resumptions: a torn entry would read as "new".
        for path in _listdir(self.spool / "state" / "ledger"):
            if not _is_temp(path):
                entry = json.loads(_read(path) or b"null")
                assert isinstance(entry, dict) and entry.get("sha256") is not None, (
                    f"P1 {when}: ledger entry {path.name} is torn: {entry!r}"
                )
        # P2: every result ever seen stays, byte for byte (results are written once).
        for name, raw in self.seen_results.items():
            now = _read(self.outbox / name)
            assert now == raw, (
                f"P2 {when}: result {name} was visible before a cut and is now {now!r}"
            )
        # Where the filesystem cannot exchange two directories (LazyFS, NFS), a replacing
        # publish is two renames; a crash between them leaves the old tree aside until the next
        # daemon start puts it back (storage.exists_or_restore). Only that, only before it.
        aside = set()
        if not at_end and not self.exchange:
            aside = {p.name[len(TEMP_PREFIX) :].split(ASIDE_MARK)[0] for p in _asides_in(self)}
        lost_runs = self.seen_runs - set(runs) - aside
        assert not lost_runs, f"P2 {when}: run directories lost: {sorted(lost_runs)}"
        lost_bundles = self.seen_bundles - set(bundles) - aside
        assert not lost_bundles, f"P2 {when}: bundles lost: {sorted(lost_bundles)}"
        self.tally.restorable += len(aside & (self.seen_runs | self.seen_bundles))
        if before is not None:
            for request_id, status in before.statuses.items():
                after = read_json(self.outbox / f"{request_id}{STATUS_SUFFIX}")
                assert isinstance(after, dict), f"P2 {when}: status of {request_id} lost"
                assert after["seq"] >= status["seq"], (
                    f"P2 {when}: status of {request_id} went back from seq {status['seq']} "
                    f"to {after['seq']}"
                )
        # P3: a succeeded result names a run that is there and verifies.
        generated: Counter[str] = Counter()
        for path in _listdir(self.outbox):
            if not path.name.endswith(RESULT_SUFFIX) or path.name.startswith("."):
                continue
            result = json.loads(path.read_bytes())
            if result["state"] == "succeeded":
                run_path = result["run"]["path"]
                assert run_path in runs or run_path in aside, (
                    f"P3 {when}: {path.name} names a missing run {run_path}"
                )
                capture = result.get("capture") or {}
                if capture.get("status") == "generated":
                    generated[capture["captureKey"]] += 1
        twice = {key: n for key, n in generated.items() if n > 1 + self.forced[key]}
        assert not twice, f"P5 {when}: bundles generated more than once: {twice}"
        return {"runs": len(runs), "bundles": len(bundles)}

    def _settle_fragile_expectations(self) -> None:
        """A cp+mv drop whose bytes were lost before the daemon acknowledged it (no status
        was ever visible) legitimately comes back empty: then ``rejected``/``invalid_json`` is
        the outcome it would have had. Once acknowledged, it must end as it would have."""
        for request_id, drop in list(self.fragile.items()):
            if request_id in self.acknowledged:
                continue
            for place in (self.inbox, *(_listdir(self.spool / "work"))):
                raw = _read(place / drop.name)
                if raw is not None and not raw.strip():
                    drop.dest, drop.state, drop.code = "quarantine", "rejected", "invalid_json"

    # --- the end -------------------------------------------------------------------------------

    def final_check(self) -> None:
        with self.fs.guard("the final invariants"):
            report = self.check(counting=False, run_allowance=self.capture_allowance())
            self.check_power(None, "at the end", at_end=True)
            for item in self.drops:
                result = read_json(self.outbox / f"{item.request_id}{RESULT_SUFFIX}")
                assert isinstance(result, dict)
                code = (result.get("error") or {}).get("code")
                if code == "interrupted":
                    assert item.code == code, f"P4: {item.request_id} interrupted: {result}"
                if item.dest == "quarantine" and item.code is None:
                    assert code == "invalid_json", (item, result)
                self.tally.outcomes[f"{result['state']}{'/' + code if code else ''}"] += 1
            assert report.done + report.quarantined == len(self.drops)

    def sweep_check(self) -> None:
        """P5 debris: age the crash temporaries past ``temp_max_age`` (as if the power stayed
        off for an hour), start once more, and nothing hidden is left in the swept places."""
        places = [
            self.outbox,
            self.quarantine,
            self.done,
            self.spool / "state" / "ledger",
            self.spool / "state",
            self.runs,
            self.telemetry,
        ]
        with self.fs.guard("the debris sweep"):
            old = 1_000_000_000
            debris = [p for place in places for p in _listdir(place) if _is_temp(p)]
            self.tally.debris += len(debris)
            if not debris:
                return
            for path in debris:
                # On the backing directory: LazyFS answers stat from its own cache.
                backing = self.fs.root / path.relative_to(self.fs.mnt)
                os.utime(backing, (old, old), follow_symlinks=False)
            self.fs.remount()
            daemon = self.start()
            assert daemon.stop() == 0
            left = [
                f"{p.parent.name}/{p.name}" for pl in places for p in _listdir(pl) if _is_temp(p)
            ]
            assert left == [], f"P5: crash debris not swept: {left}"


KINDS = [
    "simulation",
    "simulation, reused run",
    "telemetry, bundle generated",
    "telemetry, fresh replay",
    "telemetry, reused run",
    "rejected: invalid_json",
    "rejected: invalid_request",
    "failed: template_not_found",
    "simulation, cp+mv drop without fsync",
]


# --- verification of published artefacts -----------------------------------------------------


def verify_run(run_dir: Path) -> None:
    """P1 for a run: run.json, manifest.json, series/index.json parse; series match hashes."""
    for part in ("run.json", "series/index.json"):
        raw = _read(run_dir / part)
        assert raw, f"P1: {run_dir.name}/{part} is missing or empty"
        json.loads(raw)
    manifest = json.loads(_read(run_dir / "manifest.json") or b"null")
    assert isinstance(manifest, dict), f"P1: {run_dir.name}/manifest.json is torn"
    hashes = manifest.get("seriesHashes")
    assert isinstance(hashes, dict) and hashes, f"P1: {run_dir.name} has no seriesHashes"
    for series_id, digest in hashes.items():
        data = _read(run_dir / "series" / f"{series_id}.csv")
        assert data is not None, f"P1: {run_dir.name}: series {series_id} missing"
        actual = "sha256:" + hashlib.sha256(data).hexdigest()
        assert actual == digest, f"P1: {run_dir.name}: series {series_id} does not match its hash"


def verify_bundle(bundle: Path, key: str) -> None:
    """P1 for a bundle: manifest.json (validate_bundle: files, SHA-256, rows) and bundle.json."""
    validate_bundle(bundle, key)
    info = json.loads(_read(bundle / "bundle.json") or b"null")
    assert isinstance(info, dict) and info.get("captureKey") == key, f"P1: {key}/bundle.json"


def _process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (the forkserver and the worker processes)."""
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        for task in _listdir(Path(f"/proc/{current}/task")):
            with contextlib.suppress(OSError):
                todo.extend(int(c) for c in (task / "children").read_text().split())
    return out


def _alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _can_exchange(directory: Path) -> bool:
    """Whether this filesystem swaps two directories atomically (LazyFS: no, EINVAL)."""
    first, second = directory / ".probe-a", directory / ".probe-b"
    first.mkdir()
    second.mkdir()
    try:
        return storage._exchange(first, second)
    finally:
        first.rmdir()
        second.rmdir()


def _asides_in(world: PowerWorld) -> list[Path]:
    return [
        p for root in (world.runs, world.telemetry) for p in _listdir(root) if ASIDE_MARK in p.name
    ]


def _is_temp(path: Path) -> bool:
    return path.name.startswith(TEMP_PREFIX)


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return None


def _listdir(directory: Path) -> list[Path]:
    try:
        return sorted(directory.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []


def _visible_dirs(root: Path) -> list[Path]:
    return [
        p
        for p in _listdir(root)
        if not p.name.startswith(".") and not p.is_symlink() and p.is_dir()
    ]


class Sampler:
    """Reads the outbox every ``interval`` s while a daemon runs: results a reader saw before a
    LazyFS crash (which leaves no moment to take a snapshot) must survive it (P2)."""

    def __init__(self, world: PowerWorld, interval: float = 0.05) -> None:
        self.world = world
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self.seen: dict[str, bytes] = {}

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.world.seen_results.update(self.seen)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                names = os.listdir(self.world.outbox)
                for name in names:
                    if name.endswith(RESULT_SUFFIX) and not name.startswith("."):
                        with contextlib.suppress(FileNotFoundError):
                            self.seen[name] = (self.world.outbox / name).read_bytes()
            except OSError:
                return  # the filesystem went away (an armed crash): stop sampling
