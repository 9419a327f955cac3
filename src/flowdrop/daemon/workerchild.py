"""The loop of one worker process (see :mod:`flowdrop.daemon.workerprocs`).

It receives ``(request, request_id)`` pairs over its pipe, runs the processor, sends progress as
``("progress", phase, message)`` and ends each request with ``("result", RunResult)``,
``("error", code, message, details)`` for a :class:`FlowdropError` the processor raised, or
``("crash", description)`` for a bug. EOF on the pipe is the order to exit.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import resource
import signal
import sys
from multiprocessing.connection import Connection

import structlog

from flowdrop.core.contract import Phase, RunRequest
from flowdrop.core.engine import compilecache
from flowdrop.core.errors import FlowdropError
from flowdrop.daemon import logsetup
from flowdrop.daemon.config import Settings
from flowdrop.daemon.processor import ProcessorFactory

log = structlog.get_logger("flowdrop.daemon")
_PR_SET_PDEATHSIG = 1


def _die_with_the_daemon() -> None:
    """SIGKILL this process when its parent (the forkserver, which exits when the daemon dies)
    goes: a worker must never go on writing runs for a daemon that was killed."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() == 1:  # the parent was already gone before prctl
        os._exit(1)


def serve(conn: Connection, settings: Settings, factory: ProcessorFactory) -> None:
    _die_with_the_daemon()
    # The daemon decides about stopping: Ctrl-C and reloads are its business, not ours.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if settings.worker_memory_limit_mb is not None:
        limit = settings.worker_memory_limit_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    logsetup.configure(settings.log_format.value, settings.log_level, sys.stdout)
    compilecache.shared_cache().resize(settings.compile_cache_size)
    processor = factory(settings)
    while True:
        try:
            request, request_id = conn.recv()
        except (EOFError, OSError):
            return
        _serve_one(conn, processor, request, request_id)


def _serve_one(conn: Connection, processor: object, request: RunRequest, request_id: str) -> None:
    def progress(phase: Phase, message: str) -> None:
        conn.send(("progress", Phase(phase).value, message))

    try:
        result = processor(request, request_id, progress)  # type: ignore[operator]
    except FlowdropError as exc:
        conn.send(("error", exc.code.value, exc.message, exc.details))
        return
    except Exception as exc:
        log.exception("processor_crashed", requestId=request_id, where="worker process")
        conn.send(("crash", type(exc).__name__))
        return
    conn.send(("result", result, compilecache.shared_cache().stats()))
