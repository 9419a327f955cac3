"""Named failpoints for crash and fault-injection tests (issue: reliability suite).

Production code calls :func:`failpoint` at the points where a crash or an I/O error matters
(after a claim, before a bundle rename, ...). Nothing happens unless the environment variable
``FLOWDROP_FAILPOINTS`` names the point, e.g. ``FLOWDROP_FAILPOINTS="capture_before_publish=kill"``.
Actions: ``kill`` (SIGKILL this process, as a crash would), ``eio`` / ``enospc`` (raise that
``OSError``), ``sleep:<seconds>``. A ``@N`` suffix fires only on the N-th hit in this process,
e.g. ``after_claim=kill@3``. The variable is read once per process.
"""

from __future__ import annotations

import errno
import os
import threading
import time
from functools import cache

ENV = "FLOWDROP_FAILPOINTS"
_SIGKILL = 9
_hits: dict[str, int] = {}
_lock = threading.Lock()


@cache
def _configured() -> dict[str, tuple[str, int | None]]:
    spec = os.environ.get(ENV, "")
    points: dict[str, tuple[str, int | None]] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, action = item.partition("=")
        action, _, nth = action.partition("@")
        points[name] = (action or "kill", int(nth) if nth else None)
    return points


def armed() -> bool:
    """Whether any failpoint is configured for this process.

    The daemon then runs the orchestrator in its own threads, not in worker processes: a
    failpoint's ``kill`` means "the daemon crashes here" and ``@N`` counts hits in one process.
    """
    return bool(_configured())


def failpoint(name: str) -> None:
    """Trigger the action configured for ``name``, if any."""
    configured = _configured()
    if not configured or name not in configured:
        return
    action, nth = configured[name]
    with _lock:
        _hits[name] = _hits.get(name, 0) + 1
        count = _hits[name]
    if nth is not None and count != nth:
        return
    if action == "kill":
        os.kill(os.getpid(), _SIGKILL)
    elif action == "eio":
        raise OSError(errno.EIO, os.strerror(errno.EIO), f"failpoint:{name}")
    elif action == "enospc":
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), f"failpoint:{name}")
    elif action.startswith("sleep:"):
        time.sleep(float(action.removeprefix("sleep:")))


def reset() -> None:
    """Forget hit counts and re-read the environment (tests in one process)."""
    _configured.cache_clear()
    with _lock:
        _hits.clear()
