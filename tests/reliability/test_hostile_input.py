"""Hostile input: a catalogue of attack files and requests against one real daemon.

Each entry is refused with its documented code and message (docs/protocol.md error table), the
daemon stays up, and the fingerprint of everything outside the roots is unchanged (I5), with
symlinks into ``outside/`` planted in the inbox, the runs root, the telemetry root and the
templates directory. Reproduce::

    .venv/bin/pytest tests/reliability/test_hostile_input.py -v
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import stat
import time
from dataclasses import dataclass
from typing import Any

import pytest

from flowdrop.daemon.testing import read_json
from tests.reliability.reliability_world import Drop, World, request_body


@dataclass(frozen=True)
class Attack:
    name: str  # file name in the inbox (str, or bytes for invalid UTF-8)
    request_id: str | None  # where the outcome appears in the outbox (None: quarantine only)
    state: str  # rejected | failed | succeeded
    code: str | None
    message: str  # a regex the error message must match


def _body(request_id: str | None, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"schemaVersion": 1, "templateId": "tiny", "mode": "simulation"}
    if request_id is not None:
        body["requestId"] = request_id
    body.update(fields)
    return body


def _tel(request_id: str, **telemetry: Any) -> dict[str, Any]:
    return _body(request_id, mode="telemetry", telemetry=telemetry)


PV = "path_violation"
ID_RULE = r"use 1-127 characters from A-Z, a-z, 0-9, '_' and '-'\."

# Requests whose *fields* attack the sandbox: run by the orchestrator, refused before any write.
FIELD_ATTACKS: list[tuple[str, dict[str, Any], str, str, str]] = [
    (
        "cd-dotdot",
        _tel("cd-dotdot", captureDirectory="../outside"),
        "failed",
        PV,
        r"^telemetry\.captureDirectory contains a path separator; " + ID_RULE,
    ),
    (
        "cd-parent",
        _tel("cd-parent", captureDirectory=".."),
        "failed",
        PV,
        r"^telemetry\.captureDirectory '\.\.' refers to a parent or current directory",
    ),
    (
        "cd-abs",
        _tel("cd-abs", captureDirectory="/etc"),
        "failed",
        PV,
        r"^telemetry\.captureDirectory contains a path separator",
    ),
    (
        "cd-symlink",
        _tel("cd-symlink", captureDirectory="escape"),
        "failed",
        PV,
        r"^captureKey resolves outside its root \(a symlink leads elsewhere\)\.$",
    ),
    (
        "cd-symlink-bundle",
        _tel("cd-symlink-bundle", captureDirectory="evil-key"),
        "failed",
        PV,
        r"^captureKey resolves outside its root",
    ),
    (
        "bind-dotdot",
        _tel("bind-dotdot", captureDirectory="k1", bindings={"bins": "../../passwd"}),
        "failed",
        PV,
        r"^telemetry\.bindings\.bins contains a path separator",
    ),
    (
        "bind-abs",
        _tel("bind-abs", captureDirectory="k1", bindings={"bins": "/etc/passwd"}),
        "failed",
        PV,
        r"^telemetry\.bindings\.bins contains a path separator",
    ),
    (
        "bind-hidden",
        _tel("bind-hidden", captureDirectory="k1", bindings={"bins": ".secret"}),
        "failed",
        PV,
        r"^telemetry\.bindings\.bins '\.secret' contains characters that are not allowed",
    ),
    (
        "bind-dots",
        _tel("bind-dots", captureDirectory="k1", bindings={"bins": "a..b"}),
        "failed",
        PV,
        r"^telemetry\.bindings\.bins 'a\.\.b' refers to a parent",
    ),
    (
        "runid-dotdot",
        _body("runid-dotdot", options={"runId": "../outside"}),
        "failed",
        PV,
        r"^options\.runId contains a path separator",
    ),
    (
        "runid-abs",
        _body("runid-abs", options={"runId": "/tmp/evil"}),
        "failed",
        PV,
        r"^options\.runId contains a path separator",
    ),
    (
        "runid-symlink",
        _body("runid-symlink", options={"runId": "evil-run"}),
        "failed",
        PV,
        r"^runId resolves outside its root",
    ),
    (
        "runid-symlink-overwrite",
        _body("runid-symlink-overwrite", options={"runId": "evil-run", "overwriteExisting": True}),
        "failed",
        PV,
        r"^runId resolves outside its root",
    ),
    (
        "tpl-dotdot",
        _body("tpl-dotdot", templateId="../outside/template"),
        "failed",
        "template_not_found",
        r"^Template '\.\./outside/template' was not found\.$",
    ),
    (
        "tpl-abs",
        _body("tpl-abs", templateId="/etc/passwd"),
        "failed",
        "template_not_found",
        r"^Template '/etc/passwd' was not found\.$",
    ),
    (
        "rid-dotdot",
        _body("../evil"),
        "rejected",
        "invalid_request",
        r"^Invalid request: requestId: String should match pattern",
    ),
    (
        "rid-abs",
        _body("/abs/evil"),
        "rejected",
        "invalid_request",
        r"^Invalid request: requestId: String should match pattern",
    ),
    (
        "rid-nul",
        _body("a\u0000b"),
        "rejected",
        "invalid_request",
        r"^Invalid request: requestId: String should match pattern",
    ),
    (
        "wrong-type-template",
        _body("wrong-type-template", templateId=5),
        "rejected",
        "invalid_request",
        r"^Invalid request: templateId: Input should be a valid string\.$",
    ),
    (
        "wrong-type-params",
        _body("wrong-type-params", parameters=[1, 2]),
        "rejected",
        "invalid_request",
        r"^Invalid request: parameters: Input should be an object\.$",
    ),
    (
        "wrong-type-option",
        _body("wrong-type-option", options={"dryRun": "yes"}),
        "rejected",
        "invalid_request",
        r"^Invalid request: options\.dryRun: Input should be a valid boolean\.$",
    ),
    (
        "wrong-mode",
        _body("wrong-mode", mode="shell"),
        "rejected",
        "invalid_request",
        r"^Invalid request: mode: Input should be 'simulation' or 'telemetry'\.$",
    ),
    (
        "unknown-field",
        _body("unknown-field", command="rm -rf /"),
        "rejected",
        "invalid_request",
        r"^Invalid request: command: Extra inputs are not permitted\.$",
    ),
    (
        "seed-huge",
        _body("seed-huge", rng={"kind": "pcg32", "seed": 2**40}),
        "rejected",
        "invalid_request",
        r"^Invalid request: rng\.seed: Input should be less than or equal to",
    ),
    (
        "schema-2",
        {**_body("schema-2"), "schemaVersion": 2},
        "rejected",
        "unsupported_schema_version",
        r"^Unsupported schemaVersion 2; this flowdrop reads version 1\.$",
    ),
    (
        "param-unknown",
        _body("param-unknown", parameters={"x" * 50: "y" * 200_000}),
        "failed",
        "parameter_invalid",
        r"^Template 'tiny' has no parameter 'x{50}'\.$",
    ),
]

# Raw bytes that attack the parser.
RAW_ATTACKS: list[tuple[str, bytes, str, str]] = [
    (
        "deep",
        b"[" * 100_000 + b"]" * 100_000,
        "invalid_json",
        r"^Request JSON is nested deeper than 64 levels\.$",
    ),
    (
        "deep-object",
        b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
        "invalid_json",
        r"^Request JSON is nested deeper than 64 levels\.$",
    ),
    (
        "huge-float",
        b'{"templateId": "tiny", "mode": "simulation", "parameters": {"bins": 1e400}}',
        "invalid_json",
        r"^Number 1e400 is out of range\.$|out of range",
    ),
    (
        "huge-int",
        b'{"templateId": "tiny", "mode": "simulation", "parameters": {"bins": '
        + b"9" * 5000
        + b"}}",
        "invalid_json",
        r"^Request is not valid JSON: ",
    ),
    (
        "nan",
        b'{"templateId": "tiny", "mode": "simulation", "parameters": {"bins": NaN}}',
        "invalid_json",
        r"Non-standard JSON number 'NaN' is not allowed\.",
    ),
    (
        "dup-keys",
        b'{"templateId": "tiny", "templateId": "other", "mode": "simulation"}',
        "invalid_json",
        r"^Duplicate key 'templateId' in JSON object\.$",
    ),
    ("not-object", b"[]", "invalid_request", r"^Request must be a JSON object\.$"),
    (
        "bad-utf8-body",
        b'{"templateId": "\xff\xfe", "mode": "simulation"}',
        "invalid_json",
        r"^Request is not valid UTF-8 \(byte 16\)\.$",
    ),
    (
        "lone-surrogate",
        b'{"templateId": "\\udf9d", "mode": "simulation"}',
        "invalid_json",
        r"^Request is not valid JSON: a \\u escape is an unpaired UTF-16 surrogate\.$",
    ),
    (
        "lone-surrogate-key",
        b'{"templateId": "tiny", "mode": "simulation", "\\ud800": 1}',
        "invalid_json",
        r"unpaired UTF-16 surrogate",
    ),
    (
        "lone-surrogate-version",
        b'{"templateId": "tiny", "mode": "simulation", "schemaVersion": "\\udc00"}',
        "invalid_json",
        r"unpaired UTF-16 surrogate",
    ),
    ("truncated", b'{"templateId": "tiny", "mo', "invalid_json", r"^Request is not valid JSON: "),
]


def _reason(world: World, file_name: str) -> dict[str, Any] | None:
    return read_json(world.quarantine / f"{file_name}.reason.json")  # type: ignore[no-any-return]


def _plant_inbox_specials(world: World) -> list[tuple[str, str]]:
    """Non-regular and linked inbox entries; returns (name, kind) for the ones made."""
    made: list[tuple[str, str]] = []
    inbox = world.inbox
    os.symlink(world.outside / "secret.json", inbox / "link.json")
    made.append(("link.json", "symbolic link"))
    os.symlink(world.outside / "missing", inbox / "dangling.json")
    made.append(("dangling.json", "symbolic link"))
    os.symlink(world.outside, inbox / "dirlink.json")
    made.append(("dirlink.json", "symbolic link"))
    os.link(world.outside / "secret.json", inbox / "hardlink.json")
    made.append(("hardlink.json", "hard link"))
    os.mkfifo(inbox / "fifo.json")
    made.append(("fifo.json", "FIFO"))
    (inbox / "dir.json").mkdir()
    made.append(("dir.json", "directory"))
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(inbox / "sock.json"))
        made.append(("sock.json", "socket"))
    except OSError:
        pass
    finally:
        sock.close()
    try:
        os.mknod(inbox / "chardev.json", 0o600 | stat.S_IFCHR, os.makedev(1, 3))
        made.append(("chardev.json", "device"))
        os.mknod(inbox / "blockdev.json", 0o600 | stat.S_IFBLK, os.makedev(7, 0))
        made.append(("blockdev.json", "device"))
    except (PermissionError, OSError):
        pass  # mknod needs CAP_MKNOD; the FIFO and socket still cover non-regular files
    return made


def test_hostile_catalogue(world: World) -> None:
    world.add_tiny_templates(("tiny", "tiny-key"))
    world.config(workers=2, processor=None, stale_after=1, reconcile_interval=1)
    # A hard link inside the runs root to a file outside: replacing that run must not touch it.
    (world.runs / "hl-run").mkdir()
    os.link(world.outside / "passwd", world.runs / "hl-run" / "run.json")
    daemon = world.start()

    attacks: list[Attack] = []
    for request_id, body, state, code, message in FIELD_ATTACKS:
        name = f"{request_id}.json"
        world.drop(
            request_id,
            name=name,
            body=body,
            dest="quarantine" if state == "rejected" else "done",
            state=state,
            code=code,
            runs=0,
        )
        attacks.append(Attack(name, request_id, state, code, message))
    for request_id, raw, code, message in RAW_ATTACKS:
        world.drop_raw(f"{request_id}.json", raw, request_id=request_id, code=code)
        attacks.append(Attack(f"{request_id}.json", request_id, "rejected", code, message))

    # Sparse 1 GiB file: refused by size, never read.
    with (world.inbox / ".huge.tmp").open("wb") as handle:
        handle.truncate(1 << 30)
    os.rename(world.inbox / ".huge.tmp", world.inbox / "huge.json")
    world.expect(Drop("huge.json", "huge", "quarantine", "rejected", "request_too_large", 0))
    attacks.append(
        Attack(
            "huge.json",
            "huge",
            "rejected",
            "request_too_large",
            r"^'huge\.json' is larger than max_request_bytes \(1073741824 > 1048576 bytes\); it was not parsed\.$",
        )
    )
    # Written in place, never completed: invalid_json once older than stale_after.
    (world.inbox / "empty.json").write_bytes(b"")
    world.expect(Drop("empty.json", "empty", "quarantine", "rejected", "invalid_json", 0))
    attacks.append(
        Attack("empty.json", "empty", "rejected", "invalid_json", r"^Request is not valid JSON: ")
    )

    # File names no requestId can come from (and a body without requestId).
    nameless = json.dumps(_body(None)).encode()
    odd_names = {
        "ctl\x01\x1b[31m.json": "control characters",
        "sp ace.json": "a space",
        "-dash.json": "a leading dash",
        "a" * 200 + ".json": "200 characters",
        "b" * 245 + ".json": "250 bytes: its reason file name would exceed NAME_MAX",
        "\u202eevil.json": "a bidi override",
    }
    for name in odd_names:
        world.drop_raw(name, nameless, request_id=None, code="invalid_request")
        attacks.append(
            Attack(
                name,
                None,
                "rejected",
                "invalid_request",
                r"is not a valid requestId and the request has no requestId field",
            )
        )
    bad_utf8 = os.fsdecode(b"bad-\xff\xfe.json")
    world.drop_raw(bad_utf8, nameless, request_id=None, code="invalid_request")
    attacks.append(
        Attack(
            bad_utf8,
            None,
            "rejected",
            "invalid_request",
            r"is not a valid requestId and the request has no requestId field",
        )
    )
    # Not request names at all: ignored, left alone.
    for name in ("notes.txt", "trailing.json.tmp", ".hidden.json"):
        (world.inbox / name).write_text("{}")
        world.expect(Drop(name, None, "ignored"))

    for name, kind in _plant_inbox_specials(world):
        # Never read; the outcome is filed under the file's stem (a valid requestId).
        request_id = name.removesuffix(".json")
        world.expect(Drop(name, request_id, "quarantine", "rejected", PV, 0))
        attacks.append(
            Attack(name, request_id, "rejected", PV, rf"^'{re.escape(name)}' is a {kind}")
        )

    # Legitimate work around the attacks still runs: the outside template (followed read-only,
    # templates are configuration), a run whose old directory holds a hard link to outside/.
    world.drop("ok-sim", body=_body("ok-sim"))
    world.drop("ok-tpl-link", body=_body("ok-tpl-link", templateId="outside-tpl"))
    world.drop(
        "ok-hl-run", body=_body("ok-hl-run", options={"runId": "hl-run", "overwriteExisting": True})
    )

    assert len(attacks) >= 30
    world.wait_settled(timeout=90)
    assert daemon.proc.poll() is None, "the daemon died"
    failures = []
    for attack in attacks:
        error = _error_of(world, attack)
        if (
            error is None
            or error.get("code") != attack.code
            or not re.search(attack.message, error.get("message", ""))
        ):
            failures.append((attack.name, attack.code, attack.message, error))
    assert failures == []
    assert daemon.stop() == 0
    report = world.check(counting=False)
    assert report.states["succeeded"] == 3
    assert (world.outside / "passwd").read_text().startswith("root:")
    for name in ("notes.txt", "trailing.json.tmp", ".hidden.json"):
        assert (world.inbox / name).exists()


def _error_of(world: World, attack: Attack) -> dict[str, Any] | None:
    if attack.request_id is not None:
        result = read_json(world.outbox / f"{attack.request_id}.result.json")
        if isinstance(result, dict):
            assert result["state"] == attack.state, (attack.name, result)
            return result.get("error")  # type: ignore[no-any-return]
    for path in world.quarantine.glob("*.reason.json"):
        reason = read_json(path)
        if isinstance(reason, dict) and reason.get("fileName") == _shown_name(attack.name):
            return reason.get("error")  # type: ignore[no-any-return]
    return None


def _shown_name(name: str) -> str:
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def test_outside_fingerprint_sees_changes(world: World) -> None:
    """The I5 checker itself: a change outside the roots is reported."""
    (world.outside / "passwd").write_text("changed\n")
    with pytest.raises(AssertionError, match="I5"):
        world.check()


def test_clock_skew_and_crashed_writers(world: World) -> None:
    """mtimes far in the future or the past, and writers that died mid-write, still end once."""
    world.config(workers=2, stale_after=1, reconcile_interval=0.5)
    daemon = world.start()
    day = 86_400
    now = time.time()
    cases = {
        "future-garbage": (b'{"templateId": "t", "mo', now + day, "invalid_json"),
        "far-future-garbage": (b"{", now + 100 * 365 * day, "invalid_json"),
        "past-garbage": (b'{"templateId"', 0, "invalid_json"),
        "crashed-writer": (
            b'{"schemaVersion": 1, "templateId": "t", "mode": "simul',
            now,
            "invalid_json",
        ),
    }
    for request_id, (raw, mtime, code) in cases.items():
        path = world.inbox / f"{request_id}.json"
        path.write_bytes(raw)  # in place, never completed
        os.utime(path, (mtime, mtime))
        world.expect(Drop(path.name, request_id, "quarantine", "rejected", code, 0))
    for request_id, mtime in (("future-ok", now + day), ("past-ok", 1.0)):
        item = world.drop(request_id, body=request_body(request_id))
        os.utime(world.inbox / item.name, (mtime, mtime))
    world.wait_settled(timeout=30)
    assert daemon.stop() == 0
    world.check()


def test_hostile_bundles_under_the_telemetry_root(world: World) -> None:
    """Bundles whose manifest.json, bundle.json or a CSV is a symlink to a (valid) copy outside
    the telemetry root are refused, not read; a genuine copy inside the root still replays."""
    world.add_tiny_templates(("tiny", "tiny-key"))
    world.config(workers=1, processor=None)
    daemon = world.start()
    world.drop("gen", body={"requestId": "gen", "templateId": "tiny", "mode": "telemetry"})
    world.wait_settled()
    genuine = world.telemetry / "tiny-key"
    shutil.copytree(genuine, world.outside / "copied-bundle")
    csv = next(p.name for p in genuine.iterdir() if p.suffix == ".csv")
    for name, linked in (
        ("via-manifest", "manifest.json"),
        ("via-bundle-json", "bundle.json"),
        ("via-csv", csv),
    ):
        shutil.copytree(genuine, world.telemetry / name)
        (world.telemetry / name / linked).unlink()
        os.symlink(world.outside / "copied-bundle" / linked, world.telemetry / name / linked)
    shutil.copytree(genuine, world.telemetry / "plain-copy")
    world.planted |= {"via-manifest", "via-bundle-json", "via-csv", "plain-copy"}
    world.before = world.fingerprint()  # outside/ now holds the copy; it must not change
    for name in ("via-manifest", "via-bundle-json", "via-csv"):
        body = {
            "requestId": name,
            "templateId": "tiny",
            "mode": "telemetry",
            "telemetry": {"captureDirectory": name},
            "options": {"deterministicRunId": False},  # a fresh replay, not a reused run
        }
        world.drop(name, body=body, state="failed", code=None)
    body = {
        "requestId": "plain",
        "templateId": "tiny",
        "mode": "telemetry",
        "telemetry": {"captureDirectory": "plain-copy"},
    }
    world.drop("plain", body=body)
    world.wait_settled()
    assert daemon.stop() == 0
    for name in ("via-manifest", "via-bundle-json", "via-csv"):
        error = read_json(world.outbox / f"{name}.result.json")["error"]
        assert error["code"] in {"path_violation", "bundle_invalid"}, (name, error)
        assert "outside" in error["message"] or "symlink" in error["message"], (name, error)
    world.check(counting=False)


def test_another_bundle_is_never_served_anothers_replay(world: World) -> None:
    """Replaying bundle B must not return the run replayed from bundle A (deterministic ids
    must depend on which bundle was replayed)."""
    world.add_tiny_templates(("tiny", "tiny-key"))
    world.config(workers=1, processor=None)
    daemon = world.start()
    world.drop("from-a", body={"requestId": "from-a", "templateId": "tiny", "mode": "telemetry"})
    world.wait_settled()
    other = world.telemetry / "bundle-b"
    shutil.copytree(world.telemetry / "tiny-key", other)
    (other / "arrivals.csv").write_text(
        "bin_index,classId,value\n0,DEFAULT,20\n1,DEFAULT,20\n2,DEFAULT,20\n3,DEFAULT,20\n"
    )
    manifest = json.loads((other / "manifest.json").read_text())
    digest = hashlib.sha256((other / "arrivals.csv").read_bytes()).hexdigest()
    for entry in manifest["files"]:
        if entry["path"] == "arrivals.csv":
            entry["hash"] = f"sha256:{digest}"
    (other / "manifest.json").write_text(json.dumps(manifest))
    (other / "bundle.json").unlink()  # a hand-made bundle
    world.planted.add("bundle-b")
    body = {
        "requestId": "from-b",
        "templateId": "tiny",
        "mode": "telemetry",
        "telemetry": {"captureDirectory": "bundle-b"},
    }
    world.drop("from-b", body=body)
    world.wait_settled()
    assert daemon.stop() == 0
    world.check(counting=False)
    run_a = read_json(world.outbox / "from-a.result.json")["run"]
    run_b = read_json(world.outbox / "from-b.result.json")["run"]
    assert run_b["runId"] != run_a["runId"], "bundle-b was served bundle A's replay"
    assert run_b["wasReused"] is False


def test_first_result_is_never_touched(world: World) -> None:
    """After a request ended: garbage under its name, other content under its id and the same
    content again leave its status and result byte-identical (no second run)."""
    world.config(workers=2, stale_after=0.5)
    daemon = world.start()
    world.drop("keep")
    world.wait_settled()
    before = {p.name: p.read_bytes() for p in world.outbox.glob("keep.*")}
    world.drop_raw("keep.json", b"{not json", request_id=None, code="invalid_json")
    world.drop(
        "keep",
        name="keep-other.json",
        body=request_body("keep", sleep=0.01),
        dest="quarantine",
        state=None,
        code="request_conflict",
        runs=0,
    )
    world.drop("keep", name="keep-again.json", runs=0)
    world.wait_settled()
    assert daemon.stop() == 0
    report = world.check()
    assert {p.name: p.read_bytes() for p in world.outbox.glob("keep.*")} == before
    assert report.executions["keep"] == 1
    assert report.quarantined == 2
