"""What runs a request: the core orchestrator, or the ``processor:`` named in the config.

A processor takes the parsed request, its id and a progress callback, and returns the result;
the daemon runs it in a worker process (or thread) and never looks inside.

A processor that runs elsewhere (a worker process) also has ``submit``: the request starts
there at once and its result is asked for later, so the daemon writes the request's start batch
while the request runs instead of before (:func:`submit`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Protocol

from flowdrop.core.contract import Phase, RunRequest, RunResult
from flowdrop.daemon.config import Settings

ProgressCallback = Callable[[Phase, str], None]
Processor = Callable[[RunRequest, str, ProgressCallback], RunResult]
ProcessorFactory = Callable[[Settings], Processor]


class Pending(Protocol):
    """A request handed to a processor; :meth:`result` is called exactly once."""

    def result(self, progress: ProgressCallback) -> RunResult: ...


class _Deferred:
    """A processor without ``submit``: it runs in :meth:`result`, in the caller's thread."""

    def __init__(self, processor: Processor, request: RunRequest, request_id: str) -> None:
        self._processor = processor
        self._request = request
        self._request_id = request_id

    def result(self, progress: ProgressCallback) -> RunResult:
        return self._processor(self._request, self._request_id, progress)


def submit(processor: Processor, request: RunRequest, request_id: str) -> Pending:
    """Start ``request`` now where ``processor`` can run it beside the caller, else on demand."""
    start = getattr(processor, "submit", None)
    if callable(start):
        pending: Pending = start(request, request_id)
        return pending
    return _Deferred(processor, request, request_id)


def default_processor(settings: Settings) -> Processor:
    """``processor:`` from the config ("module:factory"), else the core orchestrator."""
    if settings.processor:
        module_name, _, attr = settings.processor.partition(":")
        factory = getattr(importlib.import_module(module_name), attr)
        processor: Processor = factory(settings)
        return processor
    from flowdrop.core.orchestration import orchestrator

    roots = orchestrator.Roots(
        runs=settings.runs_root,
        telemetry=settings.telemetry_root,
        templates=tuple(settings.templates),
    )

    def run(request: RunRequest, request_id: str, progress: ProgressCallback) -> RunResult:
        # flush=False: the end batch syncs the roots with the result (RequestRecord.end), so a
        # published run's rename costs no fsync of its own.
        return orchestrator.orchestrate(
            request, roots, request_id=request_id, progress=progress, flush=False
        )

    return run
