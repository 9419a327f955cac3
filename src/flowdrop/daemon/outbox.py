"""Status and result files in ``outbox/``, written alone or in a batch with the ledger.

Per request, ``seq`` only grows: every status of a request is computed and written under that
request's lock, from the status on disk (or the one just staged in the same batch).

What each write costs and promises (docs/architecture.md, "Durability"): an intermediate status
(:meth:`Outbox.write_status`) is synced before its rename, so it is never torn, but its rename is
left to the filesystem's next commit — a power cut may show the previous status again. Results,
terminal statuses and the ledger entries that go with them are committed in one
:class:`RequestBatch` with ``durable=True``: one data sync, the renames, one sync of the renames.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from datetime import datetime

from flowdrop.core.contract import Phase, RunResult, State, StatusFile
from flowdrop.core.fs.storage import atomic_write_bytes
from flowdrop.core.fs.writebatch import WriteBatch
from flowdrop.daemon.spool import Scrubber, Spool, read_result_file, read_status_file, utc_now


def _identity(data: bytes) -> bytes:
    return data


class RequestBatch(WriteBatch):
    """One request's files committed together: statuses (numbered in order), result, others."""

    def __init__(self, outbox: Outbox, request_id: str, previous: StatusFile | None) -> None:
        super().__init__()
        self._outbox = outbox
        self.request_id = request_id
        self.last_status = previous

    def status(
        self,
        state: str,
        *,
        phase: str | None = None,
        message: str = "",
        restart: bool = False,
        now: datetime | None = None,
    ) -> StatusFile:
        status = self._outbox.next_status(
            self.last_status, self.request_id, state, phase, message, restart, now
        )
        self.write(
            self._outbox.spool.status_path(self.request_id),
            self._outbox.scrub(status.to_json_bytes()),
        )
        self.last_status = status
        return status

    def result(self, result: RunResult, *, after_rename: str | None = None) -> None:
        self.write(
            self._outbox.spool.result_path(result.request_id),
            self._outbox.scrub(result.to_json_bytes()),
            before_rename="result_before_rename",
            after_rename=after_rename,
        )


class Outbox:
    """Writes status and result files; per request, ``seq`` only grows (serialised by a lock)."""

    def __init__(self, spool: Spool, scrub: Scrubber | None = None) -> None:
        self.spool = spool
        self.scrub = scrub or _identity
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}

    def _lock(self, request_id: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(request_id, threading.Lock())

    def forget(self, request_id: str) -> None:
        """Drop the request's lock once it has ended, so the map does not grow for ever."""
        with self._guard:
            self._locks.pop(request_id, None)

    def read_status(self, request_id: str) -> StatusFile | None:
        return read_status_file(self.spool.status_path(request_id))

    def read_result(self, request_id: str) -> RunResult | None:
        return read_result_file(self.spool.result_path(request_id))

    @contextlib.contextmanager
    def batch(self, request_id: str) -> Iterator[RequestBatch]:
        """A batch for ``request_id``, holding its status lock until the block ends.

        The caller fills the batch and commits it inside the block.
        """
        with self._lock(request_id):
            yield RequestBatch(self, request_id, self.read_status(request_id))

    def write_status(
        self,
        request_id: str,
        state: str,
        *,
        phase: str | None = None,
        message: str = "",
        now: datetime | None = None,
    ) -> StatusFile:
        """Write an intermediate status alone: never torn, but a power cut may undo it."""
        with self._lock(request_id):
            status = self.next_status(
                self.read_status(request_id), request_id, state, phase, message, False, now
            )
            atomic_write_bytes(
                self.spool.status_path(request_id),
                self.scrub(status.to_json_bytes()),
                durable=False,
            )
            return status

    def next_status(
        self,
        previous: StatusFile | None,
        request_id: str,
        state: str,
        phase: str | None,
        message: str,
        restart: bool,
        now: datetime | None,
    ) -> StatusFile:
        """The status after ``previous``; ``restart`` starts a new acceptedAt (a new submission)."""
        now = now or utc_now()
        return StatusFile.model_validate(
            {
                "request_id": request_id,
                "state": State(state),
                "phase": Phase(phase) if phase else None,
                "message": message,
                "seq": previous.seq + 1 if previous else 1,
                "accepted_at": previous.accepted_at if previous and not restart else now,
                "updated_at": now,
                "instance": self.spool.instance,
            }
        )
