"""Process lifecycle: signals, ``--detach`` (python-daemon), pidfile, and ``serve``.

Signal handlers only set a flag and write one byte to the daemon's self-pipe:

- SIGTERM / SIGINT: stop claiming, drain running requests within ``drain_timeout``, exit 0;
- SIGHUP: reload the config file; an invalid one is logged and the old one kept.

``--detach`` enters ``daemon.DaemonContext`` *before* any thread is started or spool file is
opened (python-daemon closes every descriptor it was not told to preserve). Under systemd do not
detach: ``Type=notify`` wants the main PID to stay and send the notifications itself.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import TextIO

import structlog

from flowdrop.core.engine import compilecache
from flowdrop.core.fs.storage import atomic_write_bytes
from flowdrop.daemon import logsetup
from flowdrop.daemon.config import Settings
from flowdrop.daemon.service import Daemon, StartupError

log = structlog.get_logger("flowdrop.daemon")


def install_signal_handlers(daemon: Daemon) -> None:
    def stop(signum: int, _frame: FrameType | None) -> None:
        daemon.request_stop()

    def reload(signum: int, _frame: FrameType | None) -> None:
        daemon.request_reload()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGHUP, reload)


def _detach(settings: Settings, pidfile: Path) -> TextIO:
    import daemon as python_daemon  # python-daemon; our package is flowdrop.daemon

    log_path = settings.spool / "state" / "flowdrop.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    stream = open(log_path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115 - lives with the process
    context = python_daemon.DaemonContext(
        detach_process=True,
        working_directory="/",
        umask=0o022,
        stdout=stream,
        stderr=stream,
        signal_map={},  # our own flag-only handlers are installed afterwards
    )
    context.open()
    return stream


def serve(
    settings: Settings,
    *,
    config_path: Path | None,
    once: bool = False,
    detach: bool = False,
    pidfile: Path | None = None,
) -> int:
    """Run the daemon; returns the process exit code."""
    stream: TextIO = sys.stdout
    if detach:
        if pidfile is None:
            print("usage_error: --detach needs --pidfile P", file=sys.stderr)
            return 2
        pidfile = pidfile.absolute()
        stream = _detach(settings, pidfile)
    logsetup.configure(settings.log_format.value, settings.log_level, stream)
    compilecache.shared_cache().resize(settings.compile_cache_size)
    try:
        # The pidfile says "ready": written after the spool exists and the first scan is done,
        # so a script that waits for it can drop a request at once (systemd Type=forking too).
        on_ready = (
            (lambda: atomic_write_bytes(pidfile, f"{os.getpid()}\n".encode()))
            if detach and pidfile is not None
            else (lambda: None)
        )
        daemon = Daemon(settings, config_path=config_path, once=once, on_ready=on_ready)
    except Exception as exc:  # the processor factory failed (e.g. a bad `processor:`)
        print(f"config_invalid: cannot set up the processor: {exc}", file=sys.stderr)
        return 2
    install_signal_handlers(daemon)
    try:
        return daemon.run()
    except StartupError as exc:
        log.error("daemon_start_failed", error=str(exc))
        print(f"startup_error: {exc}", file=sys.stderr)
        return 2
    finally:
        if detach and pidfile is not None:
            with contextlib.suppress(OSError):
                pidfile.unlink()
