"""The idempotency ledger: ``state/ledger/<requestId>.json`` = content hash, state, attempts.

One small JSON file per request id, replaced atomically. It is only read and written while the
per-request lock ``state/locks/<requestId>.lock`` is held (:func:`request_lock`), so two files
carrying one id — on one host or on several sharing the spool — never run twice.

- same id, same content, already ended → duplicate: no second run, first result untouched;
- same id, other content, not ``rejected`` → ``request_conflict``;
- same id, same content, not ended and nobody holds the lock → its runner died: resume, counting
  the attempt while its worker starts (before its answer is read), and give up with
  ``interrupted`` after ``max_attempts``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from flowdrop.core.fs.locking import try_flock
from flowdrop.core.fs.writebatch import WriteBatch
from flowdrop.daemon.spool import Spool, utc_now

TERMINAL = frozenset({"succeeded", "failed", "rejected"})


def content_hash(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


@dataclass(frozen=True)
class Entry:
    request_id: str
    sha256: str
    state: str
    attempts: int
    file_name: str
    instance: str
    updated_at: str

    @property
    def ended(self) -> bool:
        return self.state in TERMINAL


class Ledger:
    def __init__(self, spool: Spool) -> None:
        self.spool = spool

    def path(self, request_id: str) -> Path:
        return self.spool.ledger / f"{request_id}.json"

    def get(self, request_id: str) -> Entry | None:
        try:
            data = json.loads(self.path(request_id).read_bytes())
            return Entry(**data)
        except (OSError, ValueError, TypeError):
            return None

    def put(self, entry: Entry) -> Entry:
        """Write ``entry`` alone, durably (tests and tools; the handler batches its entries)."""
        batch = WriteBatch()
        entry = self.stage(batch, entry)
        batch.commit()
        return entry

    def stage(self, batch: WriteBatch, entry: Entry) -> Entry:
        """Add ``entry`` to ``batch`` (stamped with the time and this instance); returns it."""
        entry = replace(entry, updated_at=utc_now().isoformat(), instance=self.spool.instance)
        data = json.dumps(asdict(entry), indent=2, sort_keys=True).encode() + b"\n"
        batch.write(self.path(entry.request_id), data)
        return entry


_local_guard = threading.Lock()
_local_held: set[str] = set()


@contextlib.contextmanager
def request_lock(
    spool: Spool,
    request_id: str,
    *,
    should_stop: Callable[[], bool] = lambda: False,
    poll: float = 0.05,
) -> Iterator[bool]:
    """Hold the per-request lock; yields False if ``should_stop`` became true while waiting."""
    path = spool.locks / f"{request_id}.lock"
    while True:
        with _local_guard:
            free_here = request_id not in _local_held
            if free_here:
                _local_held.add(request_id)
        if free_here:
            try:
                with try_flock(path) as held:
                    if held:
                        yield True
                        return
            finally:
                with _local_guard:
                    _local_held.discard(request_id)
        if should_stop():
            yield False
            return
        time.sleep(poll)
