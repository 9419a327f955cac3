"""Durable, atomic filesystem primitives shared by the run writer, the bundle publisher and the spool.

The rule everywhere: write under a temporary name in the destination directory, make the data
durable, ``rename`` it over the final name, then ``fsync`` the directory so the rename itself
survives a power cut. A reader therefore sees either the old file or the whole new one.
Any ``OSError`` on the way becomes ``storage_error``; the temporary is removed.

A single file is made durable with ``fsync``. A staged directory (a run, a bundle: dozens of
files) is made durable with one call whatever its size — ``syncfs(2)`` of its filesystem where
that is a real flush (:func:`sync_tree`) — then published by one rename and one directory fsync.
See docs/architecture.md, "Durability".
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from flowdrop.core.errors import ErrorCode, FlowdropError
from flowdrop.core.fs.failpoints import failpoint

TEMP_PREFIX = ".tmp-"
T = TypeVar("T")


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_temp(path: Path, data: bytes, *, sync: bool) -> Path:
    """Write ``data`` to a new hidden temporary beside ``path`` (``sync``: fsync it too).

    The temporary is removed again if writing it fails; renaming it is the caller's.
    """
    temp = path.with_name(f"{TEMP_PREFIX}{path.name}.{uuid.uuid4().hex[:12]}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if sync:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            temp.unlink()
        raise
    os.close(fd)
    return temp


def storage_error(action: str, path: Path, exc: OSError, *, root: Path | None) -> FlowdropError:
    shown = path.name if root is None else _relative(path, root)
    msg = f"Could not {action} '{shown}': {exc.strerror or exc}."
    return FlowdropError(ErrorCode.STORAGE_ERROR, msg, path=shown, errno=exc.errno)


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return path.name


def atomic_write_bytes(
    path: Path,
    data: bytes,
    *,
    failpoint_name: str | None = None,
    root: Path | None = None,
    durable: bool = True,
) -> None:
    """Replace ``path`` with ``data`` atomically and durably.

    ``root`` only shapes error messages (paths are shown relative to it, never absolute).
    ``failpoint_name`` names the point after the temporary is durable and before the rename.
    ``durable`` False leaves the rename to the filesystem's next commit: a power cut may bring
    the previous version back, never a torn one (the data is synced before the rename).
    """
    temp: Path | None = None
    try:
        temp = write_temp(path, data, sync=True)
        if failpoint_name:
            failpoint(failpoint_name)
        os.replace(temp, path)
        if durable:
            fsync_dir(path.parent)
    except OSError as exc:
        if temp is not None:
            with contextlib.suppress(OSError):
                temp.unlink()
        raise storage_error("write", path, exc, root=root) from exc


def make_staging_dir(parent: Path, final_name: str) -> Path:
    """A fresh hidden directory beside ``parent/final_name``, on the same filesystem."""
    staging = parent / f"{TEMP_PREFIX}{final_name}.{uuid.uuid4().hex[:12]}"
    staging.mkdir(parents=False)
    return staging


# Filesystems whose syncfs(2) writes back and flushes every dirty page and inode to stable
# storage. FUSE is not among them: the kernel forwards syncfs to a FUSE server only for
# virtiofs, so there (and anywhere unknown) every file is fsynced instead.
SYNCFS_FILESYSTEMS = frozenset({"ext2", "ext3", "ext4", "xfs", "btrfs", "f2fs", "zfs", "tmpfs"})
_fs_types: dict[int, str | None] = {}
_libc: ctypes.CDLL | None = None


def filesystem_type(path: Path) -> str | None:
    """The type of the filesystem holding ``path`` (from /proc/self/mountinfo), or ``None``."""
    device = os.stat(path).st_dev
    if device in _fs_types:
        return _fs_types[device]
    wanted = f"{os.major(device)}:{os.minor(device)}"
    found = None
    with (
        contextlib.suppress(OSError),
        open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as handle,
    ):
        for line in handle:
            fields = line.split()
            if len(fields) > 2 and fields[2] == wanted and " - " in line:
                found = line.split(" - ", 1)[1].split()[0]
    _fs_types[device] = found
    return found


def syncfs(path: Path) -> bool:
    """One ``syncfs(2)`` of the filesystem holding ``path``; False where it would not be a flush."""
    global _libc
    if not hasattr(os, "major") or filesystem_type(path) not in SYNCFS_FILESYSTEMS:
        return False
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    if not hasattr(_libc, "syncfs"):
        return False
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)  # any file or directory of the filesystem
    try:
        if _libc.syncfs(fd) != 0:  # since Linux 5.8 it reports writeback errors
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code), str(path))
    finally:
        os.close(fd)
    return True


class PendingRenames:
    """Publishing renames of one request not made durable yet.

    A request that publishes several trees (a source run, a bundle, a replay run) need not fsync
    the parent after each rename: the next tree's ``syncfs`` of the same filesystem commits the
    earlier renames with it. :meth:`flush` fsyncs what no later ``syncfs`` covered; the
    orchestrator calls it before it answers, so nothing it reports is left undurable.
    """

    def __init__(self) -> None:
        self._dirs: dict[Path, int] = {}

    def add(self, directory: Path) -> None:
        self._dirs[directory] = os.stat(directory).st_dev

    def covered(self, device: int) -> None:
        """A ``syncfs`` of ``device`` completed: its pending renames are durable."""
        self._dirs = {path: dev for path, dev in self._dirs.items() if dev != device}

    def flush(self) -> None:
        while self._dirs:
            directory = next(iter(self._dirs))
            fsync_dir(directory)
            del self._dirs[directory]


def sync_tree(path: Path, pending: PendingRenames | None = None) -> None:
    """Make every file and directory under ``path`` durable before it is published.

    One ``syncfs(2)`` where the filesystem flushes on it (the count does not grow with the number
    of series files; it also makes ``pending`` renames on that filesystem durable); else a
    batched fsync pass over every file and directory, bottom-up.
    """
    if syncfs(path):
        if pending is not None:
            pending.covered(os.stat(path).st_dev)
    else:
        fsync_tree(path)


def fsync_tree(path: Path) -> None:
    """fsync every file and directory under ``path`` (bottom-up) before it is published."""
    for current, _dirs, files in os.walk(path, topdown=False):
        for name in files:
            fsync_file(Path(current) / name)
        fsync_dir(Path(current))


def publish_dir(
    staging: Path,
    final: Path,
    *,
    replace: bool = False,
    root: Path | None = None,
    pending: PendingRenames | None = None,
) -> None:
    """Make a fully written staging directory visible under ``final`` with one rename.

    The rename is made durable by an fsync of the parent, or, with ``pending``, later (see
    :class:`PendingRenames`).

    With ``replace`` an existing ``final`` is swapped with the staging directory in one
    ``renameat2(RENAME_EXCHANGE)`` and the old tree removed, so readers never see a missing or
    half-written directory under the final name (where the filesystem cannot exchange, see
    :func:`exists_or_restore`). Without it an
    existing ``final`` makes this raise ``FileExistsError`` (the caller decides what that means).
    """

    def renamed() -> None:
        if pending is None:
            fsync_dir(final.parent)
        else:
            pending.add(final.parent)

    try:
        sync_tree(staging, pending)
        if final.exists() and replace:
            if _exchange(staging, final):
                # One atomic step: ``final`` is the new tree, ``staging`` the old one (debris a
                # crash leaves under a temporary name, swept like any staging directory).
                renamed()
                shutil.rmtree(staging, ignore_errors=True)
                return
            # No RENAME_EXCHANGE here (NFS, some FUSE filesystems): two renames, with a moment
            # in between where ``final`` is missing. A crash in that moment leaves the old tree
            # aside; :func:`exists_or_restore` and the debris sweep put it back.
            aside = final.with_name(f"{TEMP_PREFIX}{final.name}{ASIDE_MARK}{uuid.uuid4().hex[:12]}")
            os.rename(final, aside)
            os.rename(staging, final)
            renamed()
            shutil.rmtree(aside, ignore_errors=True)
            return
        if final.exists():
            raise FileExistsError(final)
        os.rename(staging, final)
        renamed()
    except FileExistsError:
        raise
    except OSError as exc:
        raise storage_error("publish", final, exc, root=root) from exc


ASIDE_MARK = ".old."  # ".tmp-<name>.old.<hex>": a replaced tree renamed aside
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100
_UNSUPPORTED = {errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP}


def _exchange(first: Path, second: Path) -> bool:
    """Swap two paths atomically (``renameat2(RENAME_EXCHANGE)``); False where unsupported."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(_libc, "renameat2", None)
    if renameat2 is None:
        return False
    args = (_AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE)
    if renameat2(*args) == 0:
        return True
    code = ctypes.get_errno()
    if code in _UNSUPPORTED:
        return False
    raise OSError(code, os.strerror(code), str(second))


def _asides(final: Path) -> list[Path]:
    prefix = f"{TEMP_PREFIX}{final.name}{ASIDE_MARK}"
    try:
        names = [n for n in os.listdir(final.parent) if n.startswith(prefix)]
    except OSError:
        return []
    return [final.parent / n for n in names if len(n) == len(prefix) + 12]


def exists_or_restore(final: Path) -> bool:
    """Whether ``final`` exists — after putting back the tree a crash left renamed aside in the
    middle of a replacing :func:`publish_dir` (only where the filesystem cannot exchange)."""
    if final.exists():
        return True
    for aside in sorted(_asides(final), key=lambda p: p.stat().st_mtime, reverse=True):
        with contextlib.suppress(OSError):
            os.rename(aside, final)  # fails harmlessly if a writer published meanwhile
            fsync_dir(final.parent)
            break
    return final.exists()


class StagingError(OSError):
    """The staging directory itself could not be created (nothing was written)."""


class AlreadyPublished(FileExistsError):
    """Another writer published the final name first (and ``replace`` was not asked for)."""


def publish_staged(
    parent: Path,
    name: str,
    fill: Callable[[Path], T],
    *,
    replace: bool,
    root: Path,
    failpoint_name: str | None = None,
    pending: PendingRenames | None = None,
) -> T:
    """The one staging-then-publish path for run directories and bundles.

    A hidden staging directory beside ``parent/name`` is filled by ``fill(staging)``, then
    published with :func:`publish_dir` (one sync, one rename, one directory fsync). Whatever
    goes wrong — in ``fill``, at the failpoint, in the publication — the staging directory is
    removed and the error propagates: :class:`StagingError` when the staging directory could not
    be made, :class:`AlreadyPublished` when ``name`` appeared meanwhile. Returns what ``fill``
    returned.
    """
    try:
        staging = make_staging_dir(parent, name)
    except OSError as exc:
        raise StagingError(exc.errno, exc.strerror, exc.filename) from exc
    try:
        filled = fill(staging)
        if failpoint_name:
            failpoint(failpoint_name)
        try:
            publish_dir(staging, parent / name, replace=replace, root=root, pending=pending)
        except FileExistsError as exc:
            raise AlreadyPublished(*exc.args) from None
    except BaseException:
        remove_tree(staging)
        raise
    return filled


def remove_tree(path: Path) -> None:
    """Best-effort removal of a staging directory after a failure."""
    shutil.rmtree(path, ignore_errors=True)


def sweep_stale_temps(directory: Path, *, older_than: float, now: float | None = None) -> list[str]:
    """Remove temporaries (``.tmp-*`` files and staging directories) that a crash left behind.

    Only entries not modified for ``older_than`` seconds go: a live writer, in this process or in
    another instance sharing the directory, finishes its temporary within seconds. Returns the
    names removed. Entries that vanish meanwhile or cannot be removed are skipped.
    """
    cutoff = (time.time() if now is None else now) - older_than
    removed: list[str] = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return removed
    for entry in entries:
        if not entry.name.startswith(TEMP_PREFIX):
            continue
        try:
            if entry.stat(follow_symlinks=False).st_mtime > cutoff:
                continue
            if ASIDE_MARK in entry.name:
                final = Path(directory) / entry.name[len(TEMP_PREFIX) :].rsplit(ASIDE_MARK, 1)[0]
                restored = exists_or_restore(final)
                if not restored or not os.path.lexists(entry.path):
                    continue  # the last copy of a replaced tree: put back (or kept), not removed
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
        except OSError:
            continue
        removed.append(entry.name)
    return sorted(removed)
