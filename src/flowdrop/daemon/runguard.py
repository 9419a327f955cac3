"""The run guard: while a request runs, the runs of its template are in use.

A request may reuse any existing run of its template (deterministic run ids), and reads it
right after checking that it exists. ``flowdrop prune`` must never remove a run between those
two steps, so:

- the daemon holds ``LOCK_SH`` on ``state/locks/runs-<digest of templateId>.lock`` around every
  processor call (:func:`runs_in_use`; workers of one or many daemons share it);
- the prune takes ``LOCK_EX`` on the same file, without waiting, while it checks the spool and
  renames a run of that template aside (:func:`try_exclusive`); busy means "in use, kept".

A request that starts while the prune holds the lock waits a few milliseconds and then finds
the run gone (it writes it afresh) or back (renamed back because the request was seen). Lock
files are never deleted (see :mod:`flowdrop.core.fs.locking`).
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from pathlib import Path

import structlog

from flowdrop.core.fs.locking import acquire_flock, release_flock
from flowdrop.daemon.spool import Spool

log = structlog.get_logger()


def guard_path(spool: Spool, template_id: str) -> Path:
    digest = hashlib.sha256(template_id.encode("utf-8", "surrogateescape")).hexdigest()[:24]
    return spool.locks / f"runs-{digest}.lock"


@contextlib.contextmanager
def runs_in_use(spool: Spool, template_id: str) -> Iterator[None]:
    """Hold the template's guard shared while a request runs (waits out a prune's rename)."""
    try:
        fd = acquire_flock(guard_path(spool, template_id), timeout=None, shared=True)
    except OSError as exc:
        # The guard only protects against a concurrent prune; never fail a request for it.
        log.warning("run_guard_unavailable", templateId=template_id, error=str(exc))
        fd = None
    try:
        yield
    finally:
        if fd is not None:
            release_flock(fd)


@contextlib.contextmanager
def try_exclusive(spool: Spool, template_id: str) -> Iterator[bool]:
    """Hold the template's guard exclusively if no request of it runs now; yields whether held."""
    try:
        fd = acquire_flock(guard_path(spool, template_id), timeout=0)
    except OSError:
        fd = None
    try:
        yield fd is not None
    finally:
        if fd is not None:
            release_flock(fd)
