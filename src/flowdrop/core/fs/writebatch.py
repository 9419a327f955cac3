"""Several small files replaced together, with as few sync calls as the rules allow.

The rule of :func:`~flowdrop.core.fs.storage.atomic_write_bytes` — data durable before the rename
that shows it, the rename durable before anything that depends on it — holds for a whole batch
at once instead of file by file:

1. every file is written under a temporary name beside its target, nothing synced;
2. **one data sync** for all of them (and for existing files the batch must vouch for, such as a
   claimed request): one ``syncfs(2)`` per filesystem that flushes on it, else an ``fsync`` each;
3. the renames, in the order the files were added (then any moves);
4. with ``durable``, **one sync of the renames**: ``syncfs`` again, else an ``fsync`` of each
   directory renamed into or out of.

A power cut therefore shows every file of the batch either old or whole, never torn; without
step 4 a cut may undo renames of the batch (readers may see an older version come back), which
is what an intermediate status may do and a result may not (docs/architecture.md, "Durability").
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from flowdrop.core.fs.failpoints import failpoint
from flowdrop.core.fs.storage import fsync_dir, fsync_file, storage_error, syncfs, write_temp


@dataclass(frozen=True)
class _Write:
    path: Path
    data: bytes
    before_rename: str | None
    after_rename: str | None


@dataclass(frozen=True)
class _Move:
    source: Path
    target: Path
    before_rename: str | None


def sync_paths(paths: Iterable[Path], *, directories: bool = False) -> None:
    """Make ``paths`` durable in as few calls as possible.

    Paths sharing a filesystem where ``syncfs`` is a real flush cost one call together; a path
    alone on its filesystem, or on one where ``syncfs`` is not a flush (FUSE), one ``fsync``.
    """
    by_device: dict[int, list[Path]] = {}
    for path in dict.fromkeys(paths):
        by_device.setdefault(os.stat(path).st_dev, []).append(path)
    for group in by_device.values():
        if len(group) > 1 and syncfs(group[0]):
            continue
        for path in group:
            if directories:
                fsync_dir(path)
            else:
                fsync_file(path)


class WriteBatch:
    """Files to replace atomically, and request files to move, committed together."""

    def __init__(self) -> None:
        self._writes: list[_Write] = []
        self._moves: list[_Move] = []
        self._vouched: list[Path] = []
        self._renamed_in: list[Path] = []
        self._temps: list[Path] | None = None  # once staged: the temporaries, in write order

    def write(
        self,
        path: Path,
        data: bytes,
        *,
        before_rename: str | None = None,
        after_rename: str | None = None,
    ) -> None:
        """Replace ``path`` by ``data``; the failpoints fire around this file's rename."""
        self._writes.append(_Write(path, data, before_rename, after_rename))

    def move(self, source: Path, target: Path, *, before_rename: str | None = None) -> None:
        """Rename ``source`` to ``target`` after every write of the batch is in place."""
        self._moves.append(_Move(source, target, before_rename))

    def vouch_for(self, path: Path) -> None:
        """Sync the data of an existing regular file with the batch's own data.

        For a file the batch acknowledges (a claimed request: a client that renamed it in
        without ``fsync`` would otherwise lose its bytes to a cut after the acknowledgement).
        A path that is gone or not a regular file by then is skipped.
        """
        self._vouched.append(path)

    def sync_renames_in(self, directory: Path) -> None:
        """Make renames someone else made in ``directory`` durable with the batch's data.

        Free where ``directory`` shares a filesystem that ``syncfs`` flushes with the batch; else
        one ``fsync`` of it. A directory that is gone by then is skipped.
        """
        self._renamed_in.append(directory)

    def stage(self) -> None:
        """Step 1 alone: every file under its temporary name (``storage_error`` if not).

        What fails for want of space fails here, before anything is synced or shown; a caller
        may start work that needs the batch to be writable and then :meth:`commit` (or
        :meth:`discard`). On an error the temporaries written so far are removed.
        """
        if self._temps is not None:
            return
        temps: list[Path] = []
        current = self._writes[0].path if self._writes else Path("batch")
        try:
            for item in self._writes:
                current = item.path
                temps.append(write_temp(item.path, item.data, sync=False))
        except OSError as exc:
            _remove(temps)
            raise storage_error("write", current, exc, root=None) from exc
        self._temps = temps

    def discard(self) -> None:
        """Remove what :meth:`stage` wrote; the batch is then empty of temporaries."""
        _remove(self._temps or [])
        self._temps = []

    def commit(self, *, durable: bool = True) -> None:
        """Stage, sync, rename (and with ``durable`` sync the renames); ``storage_error`` if not.

        On an error no file of the batch has been renamed unless the error came from a rename
        or the final sync; temporaries not renamed are removed.
        """
        self.stage()
        temps = list(self._temps or [])
        # The file named in an error: the one in hand, or for a sync the batch's first.
        first = self._writes[0].path if self._writes else Path("batch")
        current = first
        try:
            sync_paths([*temps, *self._regular(self._vouched), *_existing(self._renamed_in)])
            for item, temp in zip(self._writes, list(temps), strict=True):
                current = item.path
                if item.before_rename:
                    failpoint(item.before_rename)
                os.replace(temp, item.path)
                temps.remove(temp)
                if item.after_rename:
                    failpoint(item.after_rename)
            for move in self._moves:
                current = move.target
                if move.before_rename:
                    failpoint(move.before_rename)
                os.rename(move.source, move.target)
            if durable:
                current = first
                sync_paths(self._directories(), directories=True)
        except OSError as exc:
            _remove(temps)
            raise storage_error("write", current, exc, root=None) from exc
        finally:
            self._temps = temps

    def _directories(self) -> list[Path]:
        dirs = [item.path.parent for item in self._writes]
        for move in self._moves:
            dirs += [move.target.parent, move.source.parent]
        return dirs

    @staticmethod
    def _regular(paths: list[Path]) -> list[Path]:
        kept = []
        for path in paths:
            with contextlib.suppress(OSError):
                if os.path.isfile(path) and not os.path.islink(path):
                    kept.append(path)
        return kept


def _remove(paths: list[Path]) -> None:
    for path in paths:
        with contextlib.suppress(OSError):
            path.unlink()


def _existing(directories: list[Path]) -> list[Path]:
    return [path for path in directories if os.path.isdir(path)]
