"""Fuzzing: generated and mutated requests always end in a structured status.

Volume goes through :meth:`RequestHandler.handle` in-process (the function a worker calls for a
claimed file) with the real orchestrator and the real outbox; a smaller batch goes through a
real daemon. Every outcome is a terminal status/result or a quarantine reason with a known code,
never an exception, never ``internal_error`` (a traceback in the log), never a hang (pytest
timeout). Reproduce::

    .venv/bin/pytest tests/reliability/test_fuzz.py                 # a few hundred examples
    .venv/bin/pytest tests/reliability/test_fuzz.py -m heavy        # >= 10,000
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowdrop.core.contract import QuarantineReason, RunResult, StatusFile
from flowdrop.core.errors import ErrorCode
from flowdrop.daemon.process import Limits, RequestHandler
from flowdrop.daemon.processor import default_processor
from flowdrop.daemon.spool import REASON_SUFFIX, Scrubber, Spool
from flowdrop.daemon.testing import write_config
from tests.reliability.reliability_world import TINY_TEMPLATE, World, record, tmpfs

OUTCOMES = {"succeeded", "failed", "rejected", "duplicate", "conflict"}

# --- strategies ---------------------------------------------------------------------------

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.sampled_from(["..", "../x", "/etc/passwd", "tiny", "tiny-key", "a" * 130, "\x00", "é"]),
    st.sampled_from(["\udf9d", "x\ud800y"]),  # lone surrogates (JSON "\\udXXX" escapes)
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=6,
)
ids = st.one_of(
    st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,20}", fullmatch=True), st.text(max_size=10)
)
names = st.sampled_from(["..", "../up", "/abs", "tiny-key", "k1", ".hidden", "a.csv", "x" * 140])

requests = st.fixed_dictionaries(
    {
        "templateId": st.one_of(
            st.just("tiny"), st.just("tiny"), st.sampled_from(["nope", "../tiny", ""]), json_values
        ),
        "mode": st.one_of(
            st.sampled_from(["simulation", "telemetry"]),
            st.sampled_from(["simulation", "telemetry"]),
            json_values,
        ),
    },
    optional={
        "schemaVersion": st.one_of(st.just(1), st.just(1), st.just(1), json_values),
        "requestId": ids,
        "parameters": st.one_of(
            st.fixed_dictionaries(
                {}, optional={"bins": st.one_of(st.integers(-3, 60), json_values)}
            ),
            json_values,
        ),
        "telemetry": st.one_of(
            st.fixed_dictionaries(
                {},
                optional={
                    "captureDirectory": st.one_of(names, json_values),
                    "bindings": st.one_of(
                        st.dictionaries(st.sampled_from(["bins", "x"]), names), json_values
                    ),
                },
            ),
            json_values,
        ),
        "rng": st.one_of(
            st.fixed_dictionaries({"seed": st.integers(-(2**33), 2**33)}), json_values
        ),
        "options": st.one_of(
            st.fixed_dictionaries(
                {},
                optional={
                    "autoCapture": st.booleans(),
                    "forceCapture": st.booleans(),
                    "dryRun": st.booleans(),
                    "overwriteExisting": st.booleans(),
                    "deterministicRunId": st.one_of(st.booleans(), json_values),
                    "runId": st.one_of(names, json_values),
                },
            ),
            json_values,
        ),
    },
)


@st.composite
def request_bytes(draw: st.DrawFn) -> bytes:
    """A generated request, serialised, then sometimes mutated at the byte level."""
    document = draw(requests)
    if draw(st.integers(0, 9)) == 0:
        document["extra"] = draw(json_values)  # an unknown field
    raw = json.dumps(document).encode()
    mutation = draw(st.sampled_from(["none"] * 5 + ["flip", "cut", "insert", "garbage"]))
    if mutation == "flip" and raw:
        index = draw(st.integers(0, len(raw) - 1))
        raw = raw[:index] + bytes([raw[index] ^ draw(st.integers(1, 255))]) + raw[index + 1 :]
    elif mutation == "cut":
        raw = raw[: draw(st.integers(0, len(raw)))]
    elif mutation == "insert":
        index = draw(st.integers(0, len(raw)))
        raw = raw[:index] + draw(st.binary(min_size=1, max_size=8)) + raw[index:]
    elif mutation == "garbage":
        raw = draw(st.binary(max_size=64))
    return raw


file_names = st.one_of(
    st.just(None),  # a fresh valid name
    st.text(min_size=1, max_size=30).filter(lambda n: "/" not in n and "\x00" not in n),
)

# --- in-process harness --------------------------------------------------------------------


class Harness:
    def __init__(self, base: Path) -> None:
        self.base = base
        (base / "templates").mkdir(parents=True, exist_ok=True)
        (base / "templates" / "tiny.yaml").write_text(
            TINY_TEMPLATE.format(id="tiny", key="tiny-key")
        )
        config = write_config(base, processor=None)
        from flowdrop.daemon.config import load_settings

        self.settings = load_settings(config)
        self.settings.runs_root.mkdir(parents=True, exist_ok=True)
        self.settings.telemetry_root.mkdir(parents=True, exist_ok=True)
        self.spool = Spool(self.settings.spool, "fuzz")
        self.spool.ensure()
        scrub = Scrubber({"spool": self.spool.root, "runs": self.settings.runs_root})
        self.handler = RequestHandler(
            self.spool,
            default_processor(self.settings),
            Limits(self.settings.max_request_bytes, 3),
            scrub=scrub,
        )
        self.outcomes: Counter[str] = Counter()
        self.codes: Counter[str] = Counter()

    def feed(self, raw: bytes, name: str | None) -> None:
        file_name = f"f{uuid.uuid4().hex[:12]}.json" if name is None else name + ".json"
        if len(os.fsencode(file_name)) > 250:
            file_name = file_name[:100] + ".json"
        path = self.spool.work / file_name
        if os.path.lexists(path):
            return
        path.write_bytes(raw)
        outcome = self.handler.handle(path)  # must not raise
        assert outcome in OUTCOMES, outcome
        assert not os.path.lexists(path), "the claimed file was left in work/"
        self.outcomes[outcome] += 1
        self._check_outcome(file_name)

    def _check_outcome(self, file_name: str) -> None:
        reason = self.spool.quarantine / (file_name + REASON_SUFFIX)
        if not reason.exists():
            return  # done/, or quarantined under a stamped name (checked at module end)
        body = QuarantineReason.model_validate_json(reason.read_bytes(), strict=False)
        self.codes[body.error.code.value] += 1
        assert body.error.code is not ErrorCode.INTERNAL_ERROR, body
        if body.request_id is not None:
            path = self.spool.status_path(body.request_id)
            status = StatusFile.model_validate_json(path.read_bytes(), strict=False)
            assert status.state.value in {"succeeded", "failed", "rejected"}


def _check_outbox(spool: Spool, base: Path) -> None:
    for path in spool.outbox.iterdir():
        raw = path.read_bytes()
        assert str(base).encode() not in raw, path.name
        model = StatusFile if path.name.endswith(".status.json") else RunResult
        parsed = model.model_validate_json(raw, strict=False)
        error = getattr(parsed, "error", None)
        assert error is None or error.code is not ErrorCode.INTERNAL_ERROR, (path.name, error)


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    base = tmp_path_factory.mktemp("fuzz")
    saved = structlog.get_config()
    structlog.configure(logger_factory=structlog.ReturnLoggerFactory())  # volume, not log I/O
    with contextlib.ExitStack() as stack:
        stack.callback(lambda: structlog.configure(**saved))
        stack.enter_context(tmpfs(base / "fs", "512m"))
        built = Harness(base / "fs")
        yield built
        _check_outbox(built.spool, built.base)
        record(
            "fuzz_in_process",
            {
                "examples": sum(built.outcomes.values()),
                "outcomes": dict(built.outcomes),
                "quarantineCodes": dict(built.codes),
            },
        )


@settings(
    max_examples=300, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True
)
@given(raw=request_bytes(), name=file_names)
def test_fuzz_handle_in_process(harness: Harness, raw: bytes, name: str | None) -> None:
    """Default run: a few hundred generated/mutated requests through RequestHandler.handle."""
    harness.feed(raw, name)


@pytest.mark.heavy
@settings(
    max_examples=10_000, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True
)
@given(raw=request_bytes(), name=file_names)
def test_fuzz_handle_in_process_heavy(harness: Harness, raw: bytes, name: str | None) -> None:
    """Heavy run: 10,000 more through the same handler (same outbox: duplicates and conflicts)."""
    harness.feed(raw, name)


def test_fuzz_through_the_daemon(world: World) -> None:
    """60 generated requests dropped into a real daemon: all end, I1-I5 hold, daemon stays up."""
    world.add_tiny_templates(("tiny", "tiny-key"))
    world.config(workers=2, processor=None, stale_after=0.5)
    daemon = world.start()
    samples: list[Any] = []

    @settings(max_examples=60, deadline=None, derandomize=True, database=None)
    @given(raw=request_bytes())
    def collect(raw: bytes) -> None:
        samples.append(raw)

    collect()
    for index, raw in enumerate(samples):
        name = f"fz{index}.json"
        world.drop_raw(name, raw, request_id=None, dest="any", state=None)
    world.wait_settled(timeout=120)
    assert daemon.proc.poll() is None
    assert daemon.stop() == 0
    world.check(counting=False)
    assert not [e for e in daemon.log_lines() if e.get("level") == "error"]
