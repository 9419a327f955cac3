"""A small real processor for exercising the spool without the FlowTime engine.

Select it with ``processor: flowdrop.daemon.testing:counting_processor`` in the config. It
honours a few request parameters — ``sleep`` (seconds), ``fail`` (an error code), ``crash``
(raise a bug) — reports progress like the orchestrator, and records every execution as a file
``<runs_root>/executions/<requestId>.<n>`` so tests can prove a request ran exactly once.
"""

from __future__ import annotations

import os
import time
import uuid

from flowdrop.core.contract import Phase, RunRequest, RunResult, RunSummary, State
from flowdrop.core.errors import ErrorCode, FlowdropError
from flowdrop.daemon.config import Settings
from flowdrop.daemon.process import Processor, ProgressCallback


def counting_processor(settings: Settings) -> Processor:
    executions = settings.runs_root / "executions"

    def run(request: RunRequest, request_id: str, progress: ProgressCallback) -> RunResult:
        executions.mkdir(parents=True, exist_ok=True)
        marker = executions / f"{request_id}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
        marker.write_text(f"{os.getpid()}\n")
        params = request.parameters
        progress(Phase.SIMULATING, "Simulating…")
        delay = params.get("sleep", 0)
        if isinstance(delay, int | float) and delay > 0:
            time.sleep(float(delay))
        if params.get("crash"):
            msg = "a bug in the processor"
            raise RuntimeError(msg)
        code = params.get("fail")
        if isinstance(code, str):
            raise FlowdropError(ErrorCode(code), f"Asked to fail with {code}.")
        progress(Phase.WRITING, "Writing run…")
        run_id = f"run_{request_id}"
        return RunResult(
            request_id=request_id,
            state=State.SUCCEEDED,
            run=RunSummary(
                run_id=run_id,
                mode=request.mode,
                template_id=request.template_id,
                template_version="1.0.0",
                was_reused=False,
                path=run_id,
            ),
        )

    return run
