"""The inbox's inotify events read by one thread of ours, through watchdog's inotify binding.

watchdog's ``Observer`` hands every event through four threads (the fd reader, its dispatcher,
the emitter, the observer) and builds an event object for each; a drop reached the daemon's
queue about a millisecond after its rename, several times the whole of what the drop-a-file
floor does (docs/performance.md). This reader keeps watchdog's ``InotifyFD`` (the watch, the
ctypes binding, the wake-up pipe on close) but reads it itself: one blocking read, the names in
hand, straight to the daemon's queue.

The kernel mask asks only for what the daemon acts on: a name moved in, created, or closed after
writing (``cp`` straight into the inbox), plus the inbox itself going away (the watcher is then
dead and the daemon restarts it). Overflow (``IN_Q_OVERFLOW``) reaches ``on_overflow``: the
daemon rescans.

``InotifyFD`` came with watchdog 7; where it is missing, :mod:`flowdrop.daemon.watcher` falls
back to the ``Observer``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

try:
    from watchdog.observers.inotify_c import InotifyFD
except ImportError:  # watchdog < 7, or not Linux
    AVAILABLE = False
else:
    AVAILABLE = True

# inotify(7)'s constants (the kernel ABI, not watchdog's).
_CLOSE_WRITE, _MOVED_TO, _CREATE = 0x8, 0x80, 0x100
_DELETE_SELF, _MOVE_SELF, _OVERFLOW, _IGNORED = 0x400, 0x800, 0x4000, 0x8000
_ONLYDIR, _ISDIR = 0x01000000, 0x40000000
_ACTIVITY = _MOVED_TO | _CREATE | _CLOSE_WRITE
_GONE = _DELETE_SELF | _MOVE_SELF | _IGNORED


class _NoCallback:
    """watchdog's ``WatchCallback``: nothing, since its dispatcher thread never runs here."""

    def on_event(self, event: Any) -> None:
        return None

    def on_watch_deleted(self, wd: Any) -> None:
        return None

    def on_queue_overflow(self) -> None:
        return None

    def on_events_lost(self) -> None:
        return None


class InotifyReader:
    """One thread reading the inbox's events; ``on_name`` gets each base name, never raises."""

    def __init__(
        self,
        inbox: Path,
        on_name: Callable[[str], None],
        on_overflow: Callable[[], None],
        *,
        open_fd: Callable[[], Any] | None = None,
    ) -> None:
        self.inbox = inbox
        self._open_fd = open_fd  # tests hand in a stand-in to play an overflow
        self._on_name = on_name
        self._on_overflow = on_overflow
        self._fd: Any = None
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._gone = False

    def start(self) -> None:
        """Add the watch (``OSError`` on inotify limits or a missing inbox) and read it."""
        # An InotifyFD of our own: its reader and dispatcher threads are never started.
        fd: Any = self._open_fd() if self._open_fd is not None else InotifyFD()
        self._fd, self._stopping, self._gone = fd, False, False
        # The thread reads before the watch exists: InotifyFD.close() hands its descriptors to
        # the thread blocked in a read to close, so a failed start must have that thread too.
        self._thread = threading.Thread(target=self._loop, name="flowdrop-inotify", daemon=True)
        self._thread.start()
        try:
            fd.add_callback(os.fsencode(self.inbox), _ACTIVITY | _ONLYDIR, _NoCallback(), "inbox")
        except BaseException:
            self.stop()
            raise

    @property
    def alive(self) -> bool:
        thread = self._thread
        return bool(thread is not None and thread.is_alive() and not self._gone)

    def stop(self) -> None:
        self._stopping = True
        fd, thread = self._fd, self._thread
        if fd is not None:
            fd.close()  # wakes the blocking read through watchdog's kill pipe
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=2)

    def _loop(self) -> None:
        fd = self._fd
        while not self._stopping:
            try:
                events = fd.read_events()
            except OSError:
                self._gone = True
                return
            for event in events:
                mask = event.mask
                if mask & _OVERFLOW:
                    self._safely(self._on_overflow)
                elif mask & _GONE:
                    self._gone = True  # the inbox was removed or moved: the daemon restarts us
                    return
                elif event.name and (mask & _MOVED_TO or not mask & _ISDIR):
                    # A directory is of interest only moved in under a request's name.
                    self._safely(self._on_name, os.fsdecode(event.name))

    @staticmethod
    def _safely(call: Callable[..., None], *args: Any) -> None:
        try:
            call(*args)
        except Exception:  # a callback's bug must not end the watch
            return
