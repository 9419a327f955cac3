"""A request's durable record: the batches of statuses, result and ledger entry it commits.

Three batches, each one data sync (docs/architecture.md, "Durability"):

- **start** (:meth:`RequestRecord.start`): the ``accepted`` status of a new submission, the
  ledger entry with the attempt counted, the ``running`` status, and the request file's own bytes
  synced with them; the renames are left to the next commit (a cut re-runs the request, as a
  crash would). Its ``staged`` callback runs once the files are written and before they are
  synced: the daemon hands the request to a worker there, so the sync overlaps the work, and a
  full disk still stops the request before it runs;
- **end** (:meth:`RequestRecord.end`), durable: the result (failpoint ``after_result`` after its
  rename), the terminal status, the ledger's terminal state; its data sync also makes durable
  the renames that published the runs and bundles the result names (the processor leaves them
  to it: ``orchestrate(flush=False)``), for free where the roots share the spool's filesystem;
- **rejection** (:meth:`RequestRecord.reject`), durable: status, result, ledger and the move into
  quarantine with its reason, for a file that never runs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from flowdrop.core.contract import Phase, RunResult, State
from flowdrop.core.errors import FlowdropError
from flowdrop.daemon.ledger import Entry, Ledger
from flowdrop.daemon.outbox import Outbox
from flowdrop.daemon.spool import Scrubber, Spool, display_name, quarantine


class RequestRecord:
    """The batches of one spool's requests; called under the request's lock."""

    def __init__(
        self,
        spool: Spool,
        outbox: Outbox,
        ledger: Ledger,
        scrub: Scrubber | None,
        roots: tuple[Path, ...] = (),
    ) -> None:
        self.spool = spool
        self.outbox = outbox
        self.ledger = ledger
        self.scrub = scrub
        self.roots = roots  # where the processor publishes: their renames sync with the end

    def _entry(self, request_id: str, digest: str, state: str, attempts: int, name: str) -> Entry:
        return Entry(request_id, digest, state, attempts, name, self.spool.instance, "")

    def start(
        self,
        path: Path,
        request_id: str,
        digest: str,
        *,
        attempts: int,
        max_attempts: int,
        staged: Callable[[], None] = lambda: None,
    ) -> Entry:
        """Acknowledge ``path`` and count attempt ``attempts``; returns the ledger entry.

        ``staged`` is called between writing the batch's files and syncing them; if it raises,
        nothing of the batch is kept.
        """
        message = (
            "Starting."
            if attempts == 1
            else f"Resuming after an interruption (attempt {attempts} of {max_attempts})."
        )
        with self.outbox.batch(request_id) as batch:
            if attempts == 1:
                batch.status("accepted", message="Accepted.", restart=True)
            name = display_name(path.name)
            entry = self.ledger.stage(
                batch, self._entry(request_id, digest, "running", attempts, name)
            )
            batch.status("running", phase=Phase.VALIDATING.value, message=message)
            batch.vouch_for(path)
            batch.stage()
            try:
                staged()
            except BaseException:
                batch.discard()
                raise
            batch.commit(durable=False)
        return entry

    def end(self, request_id: str, entry: Entry, result: RunResult, *, with_result: bool) -> None:
        """The terminal state (``with_result``: the result file too), durable."""
        state = State(result.state)
        if result.error is not None:
            message = f"{result.error.code.value}: {result.error.message}"
        elif result.run is not None:
            message = f"Run {result.run.run_id} {'reused' if result.run.was_reused else 'written'}."
        else:
            message = "Done."
        with self.outbox.batch(request_id) as batch:
            if with_result:
                batch.result(result, after_rename="after_result")
            if batch.last_status is None or batch.last_status.state != state:
                batch.status(state.value, message=message)
            self.ledger.stage(
                batch,
                self._entry(request_id, entry.sha256, state.value, entry.attempts, entry.file_name),
            )
            for root in self.roots:  # the runs and bundles the result names (flush=False)
                batch.sync_renames_in(root)
            batch.commit()

    def reject(self, path: Path, request_id: str, error: FlowdropError) -> None:
        """Quarantine ``path`` with ``error``; the outbox and ledger too unless another request
        (an earlier file with this id that was not rejected) owns them."""
        entry = self.ledger.get(request_id)
        owns_outbox = entry is None or entry.state == "rejected"
        with self.outbox.batch(request_id) as batch:
            if owns_outbox:
                batch.status("accepted", message="Received.", restart=True)
                batch.result(RunResult.from_error(request_id, error, state=State.REJECTED))
                batch.status("rejected", message=f"{error.code.value}: {error.message}")
                name = display_name(path.name)
                self.ledger.stage(batch, self._entry(request_id, "", "rejected", 0, name))
            quarantine(
                self.spool,
                path,
                error.body(),
                request_id=request_id,
                scrub=self.scrub,
                batch=batch,
            )
            batch.vouch_for(path)  # the rejection acknowledges these bytes too
            batch.commit()
