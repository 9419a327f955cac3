"""The one exception a processor may raise to have its request resumed like after a crash."""

from __future__ import annotations


class WorkerLost(Exception):
    """The worker process running a request died (SIGKILL, OOM): the request file stays in
    ``work/`` and is resumed under the attempt rules (``max_attempts``, then ``interrupted``)."""
