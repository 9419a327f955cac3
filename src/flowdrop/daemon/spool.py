"""The spool directory layout and every file the daemon writes into it.

```
<spool>/inbox/                     requests are dropped here (renamed in)
<spool>/work/<instance>/           claimed requests (claim = rename out of the inbox)
<spool>/outbox/<id>.status.json    replaced atomically at every transition
<spool>/outbox/<id>.result.json    written once, atomically, when the request ends
<spool>/done/                      request files that ended (or were duplicates)
<spool>/quarantine/                files not accepted, each with <name>.reason.json
<spool>/state/                     health.json, metrics.prom, ledger/, locks/, instances/
```

Outbox files never contain an absolute host path: :func:`scrub` replaces any configured root
that slipped into a message by a placeholder before the bytes are written.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from flowdrop.core.contract import (
    REQUEST_ID_PATTERN,
    QuarantineReason,
    RunResult,
    StatusFile,
)
from flowdrop.core.errors import ErrorBody
from flowdrop.core.fs.locking import acquire_flock, release_flock
from flowdrop.core.fs.writebatch import WriteBatch

_ID_RE = re.compile(REQUEST_ID_PATTERN)
STATUS_SUFFIX = ".status.json"
RESULT_SUFFIX = ".result.json"
REASON_SUFFIX = ".reason.json"


def utc_now() -> datetime:
    return datetime.now(UTC)


def is_temp_name(name: str) -> bool:
    """Names writers use while a file is incomplete: never looked at."""
    return name.startswith(".") or name.endswith(".tmp")


def is_request_name(name: str) -> bool:
    return not is_temp_name(name) and name.endswith(".json") and len(name) > len(".json")


def display_name(name: str) -> str:
    """A file name as JSON-safe text: undecodable bytes (surrogate escapes) become U+FFFD."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def valid_request_id(value: str) -> bool:
    return _ID_RE.fullmatch(value) is not None


@dataclass(frozen=True)
class Spool:
    """Paths of one spool, for one instance."""

    root: Path
    instance: str

    @property
    def inbox(self) -> Path:
        return self.root / "inbox"

    @property
    def work_root(self) -> Path:
        return self.root / "work"

    @property
    def work(self) -> Path:
        return self.work_root / self.instance

    @property
    def outbox(self) -> Path:
        return self.root / "outbox"

    @property
    def done(self) -> Path:
        return self.root / "done"

    @property
    def quarantine(self) -> Path:
        return self.root / "quarantine"

    @property
    def state(self) -> Path:
        return self.root / "state"

    @property
    def ledger(self) -> Path:
        return self.state / "ledger"

    @property
    def locks(self) -> Path:
        return self.state / "locks"

    @property
    def instances(self) -> Path:
        return self.state / "instances"

    def ensure(self, *, own_work: bool = True) -> None:
        """Create the spool's directories; ``own_work`` False leaves out work/<instance>/.

        A live instance creates its work dir only after taking its instance lock: another
        instance that found the dir but a free lock would take it for a dead one's.
        """
        for path in (
            self.inbox,
            *((self.work,) if own_work else (self.work_root,)),
            self.outbox,
            self.done,
            self.quarantine,
            self.ledger,
            self.locks,
            self.instances,
        ):
            path.mkdir(parents=True, exist_ok=True)

    def status_path(self, request_id: str) -> Path:
        return self.outbox / f"{request_id}{STATUS_SUFFIX}"

    def result_path(self, request_id: str) -> Path:
        return self.outbox / f"{request_id}{RESULT_SUFFIX}"


# --- scrubbing -------------------------------------------------------------------------------


class Scrubber:
    """Replaces absolute root paths in outbox text by ``<name>`` placeholders."""

    def __init__(self, roots: dict[str, Path]) -> None:
        pairs = []
        for name, path in roots.items():
            for variant in {str(path), os.path.realpath(path)}:
                pairs.append((variant.rstrip("/"), f"<{name}>"))
        # Longest first so a root inside another is replaced by its own name.
        self._pairs = sorted(pairs, key=lambda pair: len(pair[0]), reverse=True)

    def __call__(self, data: bytes) -> bytes:
        text = data.decode("utf-8")
        for path, placeholder in self._pairs:
            if path and path != "/" and path in text:
                text = text.replace(path, placeholder)
        return text.encode("utf-8")


def read_status_file(path: Path) -> StatusFile | None:
    try:
        return StatusFile.model_validate_json(path.read_bytes(), strict=False)
    except (OSError, ValueError):
        return None


def read_result_file(path: Path) -> RunResult | None:
    try:
        return RunResult.model_validate_json(path.read_bytes(), strict=False)
    except (OSError, ValueError):
        return None


# --- moving request files ----------------------------------------------------------------------


# Room left in NAME_MAX (255 bytes) for a collision stamp (23), ".reason.json" (12) and the
# atomic writer's temporary name (18): longer names are shortened when filed away.
MAX_FILED_NAME_BYTES = 200


def _fit(name: str) -> str:
    """``name`` if it fits :data:`MAX_FILED_NAME_BYTES`, else a truncated one with a digest."""
    raw = os.fsencode(name)
    if len(raw) <= MAX_FILED_NAME_BYTES:
        return name
    digest = hashlib.sha256(raw).hexdigest()[:12]
    ext = ".json" if name.endswith(".json") else ""
    head = raw[: MAX_FILED_NAME_BYTES - len(digest) - len(ext) - 1]
    return f"{os.fsdecode(head)}~{digest}{ext}"


def _free_name(directory: Path, name: str) -> Path:
    name = _fit(name)
    target = directory / name
    if not os.path.lexists(target):
        return target
    stem, dot, ext = name.rpartition(".")
    if not dot:
        stem, ext = name, ""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    suffix = f".{ext}" if ext else ""
    return directory / f"{stem}.{stamp}-{uuid.uuid4().hex[:6]}{suffix}"


def file_away(source: Path, directory: Path) -> Path:
    """Rename an ended request file into ``directory`` (``done/``) under a free name.

    Not fsynced, on purpose: the result, terminal status and ledger entry are durable before
    this rename, so a power cut that undoes it leaves the file in ``work/``, where the next
    start finds its ended ledger entry and files it away again (a duplicate, no second run).
    """
    target = _free_name(directory, source.name)
    os.rename(source, target)
    return target


def quarantine(
    spool: Spool,
    source: Path,
    error: ErrorBody,
    *,
    request_id: str | None,
    scrub: Scrubber | None = None,
    now: datetime | None = None,
    batch: WriteBatch | None = None,
) -> Path:
    """Move ``source`` (any file type; never followed) into quarantine with its reason file.

    Into ``batch`` when given (the caller commits it, with the request's own result and
    statuses), else committed here. Reason first: a crash between the two renames leaves a
    reason without its file, never the reverse.
    """
    target = _free_name(spool.quarantine, source.name)
    reason = QuarantineReason(
        file_name=display_name(source.name),
        request_id=request_id,
        quarantined_at=now or utc_now(),
        instance=spool.instance,
        error=error,
    )
    data = reason.to_json_bytes()
    if scrub is not None:
        data = scrub(data)
    own = batch is None
    batch = WriteBatch() if batch is None else batch
    batch.write(target.with_name(target.name + REASON_SUFFIX), data)
    batch.move(source, target, before_rename="quarantine_before_rename")
    if own:
        batch.commit()
    return target


# --- locks -------------------------------------------------------------------------------------


class InstanceLock:
    """``state/instances/<instance>.lock``, flock'd for the life of the process (= alive)."""

    def __init__(self, spool: Spool) -> None:
        self.path = spool.instances / f"{spool.instance}.lock"
        self._fd: int | None = None

    def acquire(self) -> bool:
        try:
            fd = acquire_flock(self.path, timeout=0)
        except OSError:
            return False
        if fd is None:
            return False
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "startedAt": utc_now().isoformat()}).encode())
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            release_flock(self._fd)
            self._fd = None
