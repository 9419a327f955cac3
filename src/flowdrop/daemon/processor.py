"""What runs a request: the core orchestrator, or the ``processor:`` named in the config.

A processor takes the parsed request, its id and a progress callback, and returns the result;
the daemon runs it in a worker process (or thread) and never looks inside.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from flowdrop.core.contract import Phase, RunRequest, RunResult
from flowdrop.daemon.config import Settings

ProgressCallback = Callable[[Phase, str], None]
Processor = Callable[[RunRequest, str, ProgressCallback], RunResult]
ProcessorFactory = Callable[[Settings], Processor]


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
        return orchestrator.orchestrate(request, roots, request_id=request_id, progress=progress)

    return run
