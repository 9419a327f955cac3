"""The Daemon loop in-process: polling mode, observer death, overflow rescans, reload."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from flowdrop.daemon.config import Settings, WatchMode
from flowdrop.daemon.notify import Notifier
from flowdrop.daemon.service import Daemon
from flowdrop.daemon.testing import (
    counting_processor,
    drop_json,
    terminal_status,
    wait_until,
)

REQUEST = {"templateId": "t", "mode": "simulation"}


def _settings(tmp_path: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "spool": tmp_path / "spool",
        "runs_root": tmp_path / "runs",
        "telemetry_root": tmp_path / "telemetry",
        "templates": (tmp_path / "templates",),
        "instance": "unit",
        "workers": 1,
        "reconcile_interval": 30,
        "poll_interval": 0.1,
        "health_interval": 0.1,
        "stale_after": 0.5,
    }
    values.update(overrides)
    return Settings.model_validate(values)


class Running:
    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.code: int | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        assert daemon.ready.wait(10)

    def _run(self) -> None:
        self.code = self.daemon.run()

    def stop(self) -> int | None:
        self.daemon.request_stop()
        self.thread.join(10)
        return self.code


@pytest.fixture
def start(tmp_path: Path) -> Iterator[object]:
    started: list[Running] = []

    def go(**overrides: object) -> Running:
        settings = _settings(tmp_path, **overrides)
        daemon = Daemon(settings, processor_factory=counting_processor, notifier=Notifier({}))
        running = Running(daemon)
        started.append(running)
        return running

    yield go
    for running in started:
        running.stop()


def test_polling_mode_picks_up_drops_without_events(start, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """watch: polling finds a dropped file within the poll interval."""
    running = start(watch=WatchMode.POLLING)
    assert running.daemon.snapshot().watch_mode == "polling"
    drop_json(tmp_path / "spool" / "inbox", "p.json", REQUEST)
    status = wait_until(lambda: terminal_status(tmp_path / "spool" / "outbox", "p"), timeout=5)
    assert status["state"] == "succeeded"
    assert running.stop() == 0


def test_dead_observer_is_restarted_and_the_inbox_rescanned(start, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """If the observer thread dies, health says so and the loop restarts it and rescans."""
    running = start(watch=WatchMode.INOTIFY)
    watcher = running.daemon._watcher
    assert watcher is not None
    watcher._source.stop()  # type: ignore[union-attr]  # simulate the watch dying
    wait_until(lambda: watcher.restarts == 1, timeout=5, message="observer restart")
    drop_json(tmp_path / "spool" / "inbox", "after.json", REQUEST)
    assert wait_until(lambda: terminal_status(tmp_path / "spool" / "outbox", "after"), timeout=5)
    assert running.daemon.snapshot().observer_alive


def test_overflow_triggers_a_rescan_that_finds_unannounced_files(start, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Files whose events were lost are found by the rescan an overflow triggers."""
    running = start(watch=WatchMode.INOTIFY)
    running.daemon._disarm()  # no events any more: only a scan can find the file
    inbox = tmp_path / "spool" / "inbox"
    (inbox / "lost.json").write_text(json.dumps(REQUEST))
    running.daemon._on_overflow()
    status = wait_until(lambda: terminal_status(tmp_path / "spool" / "outbox", "lost"), timeout=5)
    assert status["state"] == "succeeded"


def test_watchdog_health_requires_a_live_observer(start) -> None:  # type: ignore[no-untyped-def]
    """healthy() is false while the observer is down."""
    running = start(watch=WatchMode.INOTIFY)
    assert running.daemon.healthy()
    running.daemon._disarm()
    assert not running.daemon.healthy()


def test_reload_without_a_config_file_keeps_settings(start) -> None:  # type: ignore[no-untyped-def]
    """A reload re-reads the (default) configuration; a spool change is refused."""
    running = start()
    assert running.daemon.reload() is False  # defaults point at another spool
    assert running.daemon.settings.instance == "unit"


def test_second_daemon_with_the_same_instance_name_refuses_to_start(tmp_path: Path) -> None:
    """Two live processes may not share an instance name (its work dir)."""
    from flowdrop.daemon.service import StartupError

    first = Running(
        Daemon(_settings(tmp_path), processor_factory=counting_processor, notifier=Notifier({}))
    )
    try:
        second = Daemon(
            _settings(tmp_path), processor_factory=counting_processor, notifier=Notifier({})
        )
        second.lock_wait = 0.1
        with pytest.raises(
            StartupError, match="another flowdrop process is running as instance 'unit'"
        ):
            second.run()
    finally:
        first.stop()


def test_inotify_limit_falls_back_to_polling(
    start, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    """ENOSPC from inotify_add_watch (watch limit) with watch: auto → polling, still working."""
    import errno

    from flowdrop.daemon import watcher

    def no_watches(self: object) -> None:
        raise OSError(errno.ENOSPC, "inotify watch limit reached")

    monkeypatch.setattr(watcher.InboxWatcher, "start", no_watches)
    running = start(watch=WatchMode.AUTO)
    assert running.daemon.snapshot().watch_mode == "polling"
    assert running.daemon.healthy()
    drop_json(tmp_path / "spool" / "inbox", "fallback.json", REQUEST)
    status = wait_until(
        lambda: terminal_status(tmp_path / "spool" / "outbox", "fallback"), timeout=5
    )
    assert status["state"] == "succeeded"


def test_status_page_keeps_the_outbox_overview_current(start, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """status_page: true -> outbox/index.html names each request soon after its status."""
    running = start(status_page=True)
    page = tmp_path / "spool" / "outbox" / "index.html"
    assert wait_until(page.is_file, timeout=5, message="first page")
    drop_json(tmp_path / "spool" / "inbox", "seen.json", REQUEST)
    wait_until(lambda: terminal_status(tmp_path / "spool" / "outbox", "seen"), timeout=5)
    wait_until(lambda: "seen" in page.read_text(encoding="utf-8"), timeout=5, message="row")
    # The keeper counts a write just after its rename: the page may be seen a moment earlier.
    wait_until(lambda: running.daemon.status_page.writes >= 2, timeout=5, message="count")
    assert running.stop() == 0


def test_status_page_is_off_by_default(start, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    running = start()
    drop_json(tmp_path / "spool" / "inbox", "quiet.json", REQUEST)
    wait_until(lambda: terminal_status(tmp_path / "spool" / "outbox", "quiet"), timeout=5)
    assert not (tmp_path / "spool" / "outbox" / "index.html").exists()
    assert running.daemon.status_page.writes == 0


def test_daemons_a_failed_test_left_running_are_reaped(tmp_path: Path) -> None:
    from flowdrop.daemon.testing import DaemonProcess, reap_daemons, write_config

    daemon = DaemonProcess(write_config(tmp_path))
    daemon.wait_ready()
    assert daemon.pid in reap_daemons()
    assert daemon.proc.poll() is not None
    assert daemon.pid not in reap_daemons()
