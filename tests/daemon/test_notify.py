"""sd_notify: datagrams on path and abstract sockets; no socket → no-op; watchdog period."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from flowdrop.daemon.notify import Notifier


def _receiver(address: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + address[1:] if address.startswith("@") else address)
    sock.settimeout(2)
    return sock


@pytest.mark.parametrize("abstract", [False, True])
def test_messages_arrive_as_datagrams(tmp_path: Path, abstract: bool) -> None:
    """READY/STATUS/WATCHDOG/STOPPING/RELOADING reach the socket, one datagram per call."""
    address = f"@fd-unit-{os.getpid()}-{abstract}" if abstract else str(tmp_path / "s")
    receiver = _receiver(address)
    notifier = Notifier({"NOTIFY_SOCKET": address})
    try:
        assert notifier.enabled
        assert notifier.ready(status="ready; queue 0")
        assert receiver.recv(1024) == b"READY=1\nSTATUS=ready; queue 0"
        notifier.watchdog()
        assert receiver.recv(1024) == b"WATCHDOG=1"
        notifier.reloading()
        lines = receiver.recv(1024).decode().splitlines()
        assert lines[0] == "RELOADING=1"
        assert lines[1].startswith("MONOTONIC_USEC=") and int(lines[1].split("=")[1]) > 0
        notifier.stopping()
        assert receiver.recv(1024) == b"STOPPING=1"
    finally:
        notifier.close()
        receiver.close()


def test_without_notify_socket_every_call_is_a_no_op() -> None:
    """Outside systemd nothing is sent and nothing fails."""
    notifier = Notifier({})
    assert not notifier.enabled
    assert notifier.ready() is False
    assert notifier.watchdog_interval is None


def test_watchdog_interval_is_half_of_watchdog_usec_for_our_pid() -> None:
    """WATCHDOG_USEC=30s → ping every 15 s; another WATCHDOG_PID → no pings."""
    assert Notifier({"WATCHDOG_USEC": "30000000"}).watchdog_interval == 15.0
    other = {"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid() + 1)}
    assert Notifier(other).watchdog_interval is None


def test_a_vanished_socket_does_not_raise(tmp_path: Path) -> None:
    """Sending to a socket that is gone returns False."""
    assert Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone")}).ready() is False
