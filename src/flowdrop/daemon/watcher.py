"""Watching the inbox: watchdog's inotify observer as a *hint*, never as the source of truth.

The handler only puts file names on a queue: an exception in a watchdog handler kills the
observer thread silently, so nothing in it can fail. The daemon scans the inbox after the watch
is armed, every reconcile interval, and whenever :class:`OverflowDetector` sees watchdog report
an inotify queue overflow (watchdog 7.1 logs it but tells handlers nothing).

Where inotify cannot see other writers — NFS, CIFS/SMB, FUSE filesystems — the daemon polls:
``watch: auto`` picks polling when ``/proc/self/mountinfo`` says the inbox is on such a
filesystem.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from watchdog.events import (
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.inotify_move_event_grouper import InotifyMoveEventGrouper

from flowdrop.daemon import inotifyreader
from flowdrop.daemon.config import WatchMode
from flowdrop.daemon.inotifyreader import InotifyReader
from flowdrop.daemon.spool import is_request_name, is_temp_name

# What the handler uses (a name appearing: created, moved in, written and closed); watchdog
# turns the list into the inotify mask, so the kernel does not queue the rest (opens, reads,
# modifications, our own scans of the inbox) for four threads to pass along and drop.
WATCHED_EVENTS = (FileCreatedEvent, FileClosedEvent, FileMovedEvent, DirMovedEvent)
NETWORK_FS_PREFIXES = ("nfs", "cifs", "smb", "fuse.", "9p", "ceph", "glusterfs", "lustre")


@dataclass(frozen=True)
class MountInfo:
    mount_point: str
    fs_type: str


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as octal.
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and i + 4 <= len(field) and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def mount_for(path: Path, mountinfo: str | None = None) -> MountInfo | None:
    """The mount holding ``path`` (longest mount-point prefix of its real path)."""
    if mountinfo is None:
        try:
            mountinfo = Path("/proc/self/mountinfo").read_text()
        except OSError:
            return None
    real = os.path.realpath(path)
    best: MountInfo | None = None
    for line in mountinfo.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        fields = left.split()
        rest = right.split()
        if len(fields) < 5 or not rest:
            continue
        point = _unescape(fields[4])
        inside = real == point or real.startswith(point.rstrip("/") + "/")
        if inside and (best is None or len(point) >= len(best.mount_point)):
            best = MountInfo(point, rest[0])
    return best


def is_network_fs(fs_type: str) -> bool:
    return fs_type.startswith(NETWORK_FS_PREFIXES)


def choose_mode(configured: WatchMode, inbox: Path, mountinfo: str | None = None) -> WatchMode:
    if configured is not WatchMode.AUTO:
        return configured
    mount = mount_for(inbox, mountinfo)
    if mount is not None and is_network_fs(mount.fs_type):
        return WatchMode.POLLING
    return WatchMode.INOTIFY


class InboxHandler(FileSystemEventHandler):
    """Enqueues the names of request files that appear or change; never raises.

    Activity on a writer's temporary name (``.x.tmp`` created, written, closed) is passed to
    ``hint``: a rename to the final name usually follows at once, but watchdog 7.1 holds an
    ``IN_MOVED_FROM`` for 0.5 s to pair it (and everything queued behind it), so the daemon
    answers a hint with a few quick inbox scans instead of waiting for the moved event.
    """

    def __init__(
        self,
        inbox: Path,
        notify: Callable[[str], None],
        hint: Callable[[], None] = lambda: None,
    ) -> None:
        super().__init__()
        self._inbox = str(inbox)
        self._notify = notify
        self._hint = hint

    def _name(self, path: str | bytes) -> str | None:
        text = os.fsdecode(path)
        if os.path.dirname(text) != self._inbox:
            return None
        name = os.path.basename(text)
        return name if is_request_name(name) else None

    def _is_temp_in_inbox(self, path: str | bytes) -> bool:
        text = os.fsdecode(path)
        return os.path.dirname(text) == self._inbox and is_temp_name(os.path.basename(text))

    def dispatch(self, event: FileSystemEvent) -> None:
        try:
            if event.is_directory and event.event_type != "moved":
                return
            candidates = [getattr(event, "dest_path", ""), event.src_path]
            for path in candidates:
                if not path:
                    continue
                name = self._name(path)
                if name is not None:
                    self._notify(name)
                elif event.event_type != "moved" and self._is_temp_in_inbox(path):
                    self._hint()
        except Exception:  # a handler exception would kill the observer
            return


class OverflowDetector(logging.Handler):
    """Counts watchdog's "queue overflowed" warnings and calls ``on_overflow``."""

    LOGGERS = ("watchdog.observers.inotify_c", "watchdog.observers.inotify")

    def __init__(self, on_overflow: Callable[[], None]) -> None:
        super().__init__(level=logging.WARNING)
        self._on_overflow = on_overflow
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        try:
            if "overflow" in record.getMessage().lower():
                self.count += 1
                self._on_overflow()
        except Exception:  # logging handlers must not raise
            return

    def install(self) -> None:
        for name in self.LOGGERS:
            logger = logging.getLogger(name)
            logger.addHandler(self)
            if logger.getEffectiveLevel() > logging.WARNING:
                logger.setLevel(logging.WARNING)

    def uninstall(self) -> None:
        for name in self.LOGGERS:
            logging.getLogger(name).removeHandler(self)


class InboxWatcher:
    """Owns the inbox's watch; ``alive`` is false when it died (the daemon then restarts it).

    The watch is an :class:`~flowdrop.daemon.inotifyreader.InotifyReader` where watchdog has
    ``InotifyFD`` (7.0 and later), else watchdog's ``Observer`` with :class:`InboxHandler`.
    """

    def __init__(
        self,
        inbox: Path,
        notify: Callable[[str], None],
        hint: Callable[[], None] = lambda: None,
        on_overflow: Callable[[], None] = lambda: None,
        *,
        observer: bool = not inotifyreader.AVAILABLE,
    ) -> None:
        self.inbox = inbox
        self._notify = notify
        self._hint = hint
        self._on_overflow = on_overflow
        self._use_observer = observer
        self._source: InotifyReader | Observer | None = None  # type: ignore[valid-type]
        self._lock = threading.Lock()
        self.restarts = 0

    def start(self) -> None:
        """Start watching; ``OSError`` on inotify limits (ENOSPC / EMFILE)."""
        with self._lock:
            if self._use_observer:
                self._source = self._start_observer()
            else:
                reader = InotifyReader(self.inbox, self._on_name, self._on_overflow)
                reader.start()
                self._source = reader

    def _on_name(self, name: str) -> None:
        # No hint for a temp name here: the rename's event is not held back (InboxHandler's
        # reason for hints), so quick scans would only repeat what the event says.
        if is_request_name(name):
            self._notify(name)

    def _start_observer(self) -> Observer:  # type: ignore[valid-type]
        # watchdog 7.1 holds every IN_MOVED_FROM for 0.5 s to pair it with its IN_MOVED_TO, and
        # its delay queue makes every later event wait behind it: a tmp→final rename in the
        # inbox would reach us half a second late. We never need the pairing (the destination
        # name is all we use: an unpaired IN_MOVED_TO arrives as "created"), so this process
        # turns the hold off. The grouper reads the class attribute when an emitter is built.
        InotifyMoveEventGrouper.delay = 0.0
        observer = Observer()
        observer.daemon = True
        handler = InboxHandler(self.inbox, self._notify, self._hint)
        observer.schedule(handler, str(self.inbox), event_filter=list(WATCHED_EVENTS))
        observer.start()
        return observer

    @property
    def alive(self) -> bool:
        source = self._source
        if isinstance(source, InotifyReader):
            return source.alive
        return bool(source is not None and source.is_alive())

    def restart(self) -> None:
        self.stop()
        self.restarts += 1
        self.start()

    def stop(self) -> None:
        with self._lock:
            source, self._source = self._source, None
        if isinstance(source, InotifyReader):
            source.stop()
        elif source is not None:
            source.stop()
            if source.is_alive():
                source.join(timeout=2)
