"""Client side of the spool: ``flowdrop submit`` (atomic drop, follow progress) and ``status``."""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from flowdrop.core.contract import RunResult, StatusFile
from flowdrop.core.fs.storage import fsync_dir
from flowdrop.daemon.spool import (
    REASON_SUFFIX,
    RESULT_SUFFIX,
    STATUS_SUFFIX,
    Spool,
    read_result_file,
    read_status_file,
    valid_request_id,
)


class SubmitError(Exception):
    """A usage problem (exit 2)."""


def request_id_of(path: Path, raw: bytes) -> str:
    """The id the daemon will use: the ``requestId`` field, else the file stem."""
    try:
        document = json.loads(raw)
    except ValueError:
        document = None
    if isinstance(document, dict) and isinstance(document.get("requestId"), str):
        return str(document["requestId"])
    return path.name.removesuffix(".json")


def drop(spool: Spool, source: Path, *, name: str | None = None) -> Path:
    """Copy ``source`` into the inbox atomically: a hidden temp name, fsync, then rename."""
    if not spool.inbox.is_dir():
        msg = f"the inbox {spool.inbox} does not exist; is the spool right (--config)?"
        raise SubmitError(msg)
    final_name = name or source.name
    if not final_name.endswith(".json"):
        final_name += ".json"
    temp = spool.inbox / f".{final_name}.{uuid.uuid4().hex[:8]}.tmp"
    with source.open("rb") as src, temp.open("wb") as dst:
        shutil.copyfileobj(src, dst)
        dst.flush()
        os.fsync(dst.fileno())
    final = spool.inbox / final_name
    os.rename(temp, final)
    fsync_dir(spool.inbox)
    return final


@dataclass
class WaitOutcome:
    exit_code: int
    result: RunResult | None = None
    status: StatusFile | None = None


def _find_reason(spool: Spool, file_name: str, since: float) -> dict[str, Any] | None:
    try:
        candidates = list(spool.quarantine.glob(f"*{REASON_SUFFIX}"))
    except OSError:
        return None
    for path in candidates:
        try:
            if path.stat().st_mtime < since - 1:
                continue
            data = json.loads(path.read_bytes())
        except (OSError, ValueError):
            continue
        if data.get("fileName") == file_name:
            return dict(data)
    return None


def _in_done(spool: Spool, file_name: str, since: float) -> bool:
    stem = file_name.removesuffix(".json")
    for path in spool.done.glob(f"{stem}*"):
        try:
            if path.stat().st_ctime >= since - 1:
                return True
        except OSError:
            continue
    return False


def wait_for(
    spool: Spool,
    request_id: str,
    file_name: str,
    *,
    before: StatusFile | None,
    since: float,
    timeout: float,
    out: TextIO,
    clock: Callable[[], float] = time.monotonic,
) -> WaitOutcome:
    """Follow ``request_id``'s status until it ends; print each new phase/message."""
    deadline = clock() + timeout
    shown_seq = before.seq if before else 0
    inbox_file = spool.inbox / file_name
    gone_since: float | None = None
    while clock() < deadline:
        status = read_status_file(spool.status_path(request_id))
        fresh = status is not None and (
            before is None or status.seq > before.seq or status.accepted_at != before.accepted_at
        )
        if status is not None and fresh and status.seq > shown_seq:
            shown_seq = status.seq
            label = status.phase.value if status.phase else status.state.value
            out.write(f"  {label:<11} {status.message}\n")
            out.flush()
            if status.state.terminal:
                result = read_result_file(spool.result_path(request_id))
                return WaitOutcome(0 if status.state.value == "succeeded" else 1, result, status)
        if not fresh and not os.path.lexists(inbox_file):
            gone_since = gone_since or clock()
            reason = _find_reason(spool, file_name, since)
            if reason is not None:
                error = reason.get("error", {})
                out.write(f"error: {error.get('code')}: {error.get('message')}\n")
                return WaitOutcome(1)
            if clock() - gone_since > 0.5 and _in_done(spool, file_name, since):
                result = read_result_file(spool.result_path(request_id))
                out.write(
                    f"  duplicate   requestId '{request_id}' already ended with this content; "
                    "showing its result.\n"
                )
                code = 0 if result is not None and result.state.value == "succeeded" else 1
                return WaitOutcome(code, result, status)
        time.sleep(0.01)
    out.write(f"error: timeout: no final status for '{request_id}' within {timeout:g} s\n")
    return WaitOutcome(1)


def describe_result(result: RunResult | None, out: TextIO) -> None:
    if result is None:
        return
    if result.error is not None:
        out.write(f"error: {result.error.code.value}: {result.error.message}\n")
        return
    if result.run is not None:
        run = result.run
        reused = " (reused)" if run.was_reused else ""
        out.write(
            f"run:     {run.run_id}{reused}  template {run.template_id} {run.template_version}\n"
        )
        out.write(f"path:    {run.path}  (relative to the runs root)\n")
    if result.capture is not None:
        cap = result.capture
        out.write(f"capture: {cap.status.value}  {cap.reason}\n")
    if result.plan is not None:
        out.write(f"plan:    {', '.join(result.plan.steps)}\n")
    warnings = (result.run.warnings if result.run else []) + list(result.capture_warnings)
    for warning in warnings:
        out.write(f"warning: {warning.code}: {warning.message}\n")


# --- status ------------------------------------------------------------------------------------


def list_statuses(spool: Spool, limit: int = 20) -> list[StatusFile]:
    statuses = []
    for path in spool.outbox.glob(f"*{STATUS_SUFFIX}"):
        status = read_status_file(path)
        if status is not None:
            statuses.append(status)
    statuses.sort(key=lambda s: s.updated_at, reverse=True)
    return statuses[:limit]


def _age(moment: datetime) -> str:
    seconds = max(0.0, (datetime.now(UTC) - moment).total_seconds())
    if seconds < 120:
        return f"{seconds:.0f}s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m ago"
    return f"{seconds / 3600:.0f}h ago"


def print_table(statuses: list[StatusFile], out: TextIO) -> None:
    if not statuses:
        out.write("no requests in the outbox yet\n")
        return
    rows = [("REQUEST", "STATE", "PHASE", "UPDATED", "MESSAGE")]
    for s in statuses:
        message = s.message if len(s.message) <= 70 else s.message[:69] + "…"
        rows.append(
            (
                s.request_id,
                s.state.value,
                s.phase.value if s.phase else "-",
                _age(s.updated_at),
                message,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        out.write(
            "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:4]))
            + "  "
            + row[4]
            + "\n"
        )


def status_command(
    spool: Spool, request_id: str | None, *, as_json: bool, out: TextIO = sys.stdout
) -> int:
    if request_id is None:
        statuses = list_statuses(spool)
        if as_json:
            out.write(
                json.dumps([s.model_dump(mode="json", by_alias=True) for s in statuses], indent=2)
                + "\n"
            )
        else:
            print_table(statuses, out)
        return 0
    if not valid_request_id(request_id):
        out.write(f"error: invalid_request: '{request_id}' is not a valid requestId\n")
        return 2
    status = read_status_file(spool.status_path(request_id))
    result = read_result_file(spool.outbox / f"{request_id}{RESULT_SUFFIX}")
    if status is None:
        out.write(f"error: not_found: no status for requestId '{request_id}'\n")
        return 1
    if as_json:
        payload = {
            "status": status.model_dump(mode="json", by_alias=True),
            "result": result.model_dump(mode="json", by_alias=True) if result else None,
        }
        out.write(json.dumps(payload, indent=2) + "\n")
    else:
        print_table([status], out)
        describe_result(result, out)
    return 1 if status.state.value in ("failed", "rejected") else 0
