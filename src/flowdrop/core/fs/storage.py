"""Durable, atomic filesystem primitives shared by the run writer, the bundle publisher and the spool.

The rule everywhere: write under a temporary name in the destination directory, ``fsync`` the
file, ``rename`` it over the final name, then ``fsync`` the directory so the rename itself
survives a power cut. A reader therefore sees either the old file or the whole new one.
Any ``OSError`` on the way becomes ``storage_error``; the temporary is removed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
import uuid
from pathlib import Path

from flowdrop.core.errors import ErrorCode, FlowdropError
from flowdrop.core.fs.failpoints import failpoint

TEMP_PREFIX = ".tmp-"


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _storage_error(action: str, path: Path, exc: OSError, *, root: Path | None) -> FlowdropError:
    shown = path.name if root is None else _relative(path, root)
    msg = f"Could not {action} '{shown}': {exc.strerror or exc}."
    return FlowdropError(ErrorCode.STORAGE_ERROR, msg, path=shown, errno=exc.errno)


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return path.name


def atomic_write_bytes(
    path: Path, data: bytes, *, failpoint_name: str | None = None, root: Path | None = None
) -> None:
    """Replace ``path`` with ``data`` atomically and durably.

    ``root`` only shapes error messages (paths are shown relative to it, never absolute).
    ``failpoint_name`` names the point after the temporary is durable and before the rename.
    """
    temp = path.with_name(f"{TEMP_PREFIX}{path.name}.{uuid.uuid4().hex[:12]}")
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        if failpoint_name:
            failpoint(failpoint_name)
        os.replace(temp, path)
        fsync_dir(path.parent)
    except OSError as exc:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise _storage_error("write", path, exc, root=root) from exc


def make_staging_dir(parent: Path, final_name: str) -> Path:
    """A fresh hidden directory beside ``parent/final_name``, on the same filesystem."""
    staging = parent / f"{TEMP_PREFIX}{final_name}.{uuid.uuid4().hex[:12]}"
    staging.mkdir(parents=False)
    return staging


def fsync_tree(path: Path) -> None:
    """fsync every file and directory under ``path`` (bottom-up) before it is published."""
    for current, _dirs, files in os.walk(path, topdown=False):
        for name in files:
            fd = os.open(Path(current) / name, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(Path(current))


def publish_dir(
    staging: Path, final: Path, *, replace: bool = False, root: Path | None = None
) -> None:
    """Make a fully written staging directory visible under ``final`` with one rename.

    With ``replace`` an existing ``final`` is first renamed aside and removed after the swap, so
    readers never see a missing or half-written directory under the final name. Without it an
    existing ``final`` makes this raise ``FileExistsError`` (the caller decides what that means).
    """
    try:
        fsync_tree(staging)
        if final.exists() and replace:
            aside = final.with_name(f"{TEMP_PREFIX}{final.name}.old.{uuid.uuid4().hex[:12]}")
            os.rename(final, aside)
            os.rename(staging, final)
            fsync_dir(final.parent)
            shutil.rmtree(aside, ignore_errors=True)
            return
        if final.exists():
            raise FileExistsError(final)
        os.rename(staging, final)
        fsync_dir(final.parent)
    except FileExistsError:
        raise
    except OSError as exc:
        raise _storage_error("publish", final, exc, root=root) from exc


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
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
        except OSError:
            continue
        removed.append(entry.name)
    return sorted(removed)
