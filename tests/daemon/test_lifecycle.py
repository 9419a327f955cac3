"""Signal handlers only set flags (and wake the loop); they never do work themselves."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest

from flowdrop.daemon.lifecycle import install_signal_handlers


class FakeDaemon:
    def __init__(self) -> None:
        self.stops = 0
        self.reloads = 0

    def request_stop(self) -> None:
        self.stops += 1

    def request_reload(self) -> None:
        self.reloads += 1


@pytest.fixture
def restore_signals() -> Iterator[None]:
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


def test_sigterm_sigint_request_stop_and_sighup_requests_reload(restore_signals: None) -> None:
    """SIGTERM and SIGINT call request_stop; SIGHUP calls request_reload; nothing else."""
    daemon = FakeDaemon()
    install_signal_handlers(daemon)  # type: ignore[arg-type]
    os.kill(os.getpid(), signal.SIGHUP)
    os.kill(os.getpid(), signal.SIGTERM)
    os.kill(os.getpid(), signal.SIGINT)
    assert (daemon.stops, daemon.reloads) == (2, 1)
