"""Model-based: a hypothesis state machine drops, re-drops, drops garbage and conflicts, kills,
restarts and lets time pass, checking I2-I5 after every step and I1-I5 at the end.

Reproduce::

    .venv/bin/pytest tests/reliability/test_model_based.py              # 3 runs x 12 steps
    .venv/bin/pytest tests/reliability/test_model_based.py -m heavy     # 12 runs x 25 steps
"""

from __future__ import annotations

import shutil
import signal
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from flowdrop.daemon.testing import DaemonProcess
from tests.reliability.reliability_world import World


class SpoolMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.base = Path(tempfile.mkdtemp(prefix="flowdrop-model-"))
        self.world = World(self.base)
        self.config = self.world.config(
            workers=2, reconcile_interval=0.5, stale_after=0.5, max_attempts=50
        )
        self.daemon: DaemonProcess | None = None
        self.counter = 0
        self.kills = 0
        self.ids: list[str] = []

    def _next(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    @rule(delay=st.sampled_from([0, 0, 0.05, 0.3]))
    def drop(self, delay: float) -> None:
        request_id = self._next("r")
        params = {"sleep": delay} if delay else {}
        self.world.drop(request_id, **params)
        self.ids.append(request_id)

    @precondition(lambda self: self.ids)
    @rule(data=st.data())
    def redrop_same(self, data: st.DataObject) -> None:
        request_id = data.draw(st.sampled_from(self.ids))
        first = next(d for d in self.world.drops if d.request_id == request_id)
        self.world.drop(request_id, name=f"{self._next('dup')}.json", runs=0, **first.params)

    @precondition(lambda self: self.ids)
    @rule(data=st.data())
    def drop_conflict(self, data: st.DataObject) -> None:
        """Same requestId, other content: one of the two runs, the other is request_conflict."""
        request_id = data.draw(st.sampled_from(self.ids))
        for item in self.world.drops:
            if item.request_id == request_id:
                item.dest = "any"
        self.world.drop(request_id, name=f"{self._next('cf')}.json", dest="any", other=self.counter)

    @rule(raw=st.binary(max_size=40))
    def drop_garbage(self, raw: bytes) -> None:
        name = self._next("g")
        self.world.drop_raw(
            f"{name}.json", b"{{" + raw, request_id=name, state="rejected", code="invalid_json"
        )

    @precondition(lambda self: self.daemon is not None)
    @rule()
    def kill(self) -> None:
        assert self.daemon is not None
        self.daemon.signal(signal.SIGKILL)
        self.daemon.kill()
        self.daemon = None
        self.kills += 1

    @precondition(lambda self: self.daemon is None)
    @rule()
    def restart(self) -> None:
        self.daemon = self.world.start(self.config)

    @rule(seconds=st.sampled_from([0.05, 0.2, 0.6]))
    def tick(self, seconds: float) -> None:
        time.sleep(seconds)

    @invariant()
    def nothing_torn_nothing_outside(self) -> None:
        self.world.check_partial(run_allowance_all=1 + self.kills)

    def teardown(self) -> None:
        try:
            if self.daemon is None:
                self.daemon = self.world.start(self.config)
            self.world.wait_settled(timeout=60)
            self.daemon.wait_ready()
            assert self.daemon.stop() == 0
            allowance = {i: 1 + self.kills for i in self.ids}
            self.world.check(run_allowance=allowance)
        finally:
            self.world.close()
            shutil.rmtree(self.base, ignore_errors=True)


def _run(examples: int, steps: int) -> None:
    run_state_machine_as_test(
        SpoolMachine,
        settings=settings(
            max_examples=examples,
            stateful_step_count=steps,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        ),
    )


def test_model_based_light() -> None:
    _run(examples=3, steps=12)


@pytest.mark.heavy
def test_model_based_heavy() -> None:
    _run(examples=12, steps=25)
