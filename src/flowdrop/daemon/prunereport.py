"""The report of ``flowdrop prune``: one decision per entry, with a reason code, as data.

Every file pair, request file and run the prune looked at becomes a :class:`Decision` —
removed or kept, a stable :class:`Reason` code, a sentence for people and, when removal failed,
an :class:`~flowdrop.core.errors.ErrorBody`. ``prune --json`` prints :meth:`PruneReport.to_json`;
the text output is :func:`describe`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from flowdrop.core.errors import ErrorBody, ErrorCode, FlowdropError
from flowdrop.daemon.config import DAY, Settings, format_duration


def storage_error(action: str, shown: str, exc: OSError) -> ErrorBody:
    """The error body of a file or run that could not be renamed or removed."""
    message = f"Could not {action} '{shown}': {exc.strerror or exc}."
    return FlowdropError(ErrorCode.STORAGE_ERROR, message, path=shown, errno=exc.errno).body()


def age_text(seconds: float) -> str:
    if seconds >= 2 * DAY:
        return f"{seconds / DAY:.0f}d"
    if seconds >= 2 * 3600:
        return f"{seconds / 3600:.0f}h"
    if seconds >= 120:
        return f"{seconds / 60:.0f}m"
    return f"{seconds:.0f}s"


class Area(StrEnum):
    DONE = "done"
    OUTBOX = "outbox"
    QUARANTINE = "quarantine"
    RUNS = "runs"


class Reason(StrEnum):
    """Why an entry was removed or kept (stable: part of ``prune --json``)."""

    EXPIRED = "expired"
    YOUNG = "younger_than_limit"
    NEVER = "retention_disabled"
    IN_FLIGHT = "in_flight"
    BUNDLE_SOURCE = "bundle_source"
    RECENT_RESULT = "named_by_recent_result"
    UNCERTAIN = "cannot_tell"
    NOT_A_RUN = "not_a_run"
    VANISHED = "vanished"
    FAILED = "remove_failed"


@dataclass(frozen=True)
class Limits:
    """Maximum ages in seconds; ``None`` keeps an area forever."""

    done: float | None
    outbox: float | None
    quarantine: float | None
    runs: float | None

    @classmethod
    def from_settings(cls, settings: Settings, older_than: float | None = None) -> Limits:
        if older_than is not None:
            return cls(older_than, older_than, older_than, older_than)
        return cls(
            settings.retain_done,
            settings.retain_outbox,
            settings.retain_quarantine,
            settings.retain_runs,
        )

    def of(self, area: Area) -> float | None:
        return {
            Area.DONE: self.done,
            Area.OUTBOX: self.outbox,
            Area.QUARANTINE: self.quarantine,
            Area.RUNS: self.runs,
        }[area]


@dataclass(frozen=True)
class Decision:
    """One entry (a file pair, a request file or a run directory) and what happened to it."""

    area: Area
    name: str  # the request id, file name or run id
    removed: bool
    reason: Reason
    detail: str
    age_seconds: float
    files: tuple[str, ...] = ()  # paths relative to the area's directory
    size_bytes: int = 0
    error: ErrorBody | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "area": self.area.value,
            "name": self.name,
            "action": "removed" if self.removed else "kept",
            "reason": self.reason.value,
            "detail": self.detail,
            "ageSeconds": round(self.age_seconds, 1),
            "files": list(self.files),
            "sizeBytes": self.size_bytes,
            "error": None if self.error is None else self.error.model_dump(mode="json"),
        }


@dataclass
class PruneReport:
    limits: Limits
    dry_run: bool
    decisions: list[Decision] = field(default_factory=list)
    errors: list[ErrorBody] = field(default_factory=list)

    def removed(self, area: Area | None = None) -> list[Decision]:
        return [d for d in self.decisions if d.removed and area in (None, d.area)]

    def kept(self, area: Area | None = None) -> list[Decision]:
        return [d for d in self.decisions if not d.removed and area in (None, d.area)]

    @property
    def ok(self) -> bool:
        return not self.errors and all(d.error is None for d in self.decisions)

    def to_json(self) -> dict[str, Any]:
        return {
            "schemaVersion": 1,
            "dryRun": self.dry_run,
            "limits": {a.value: self.limits.of(a) for a in Area},
            "removed": len(self.removed()),
            "kept": len(self.kept()),
            "freedBytes": sum(d.size_bytes for d in self.removed()),
            "decisions": [d.to_json() for d in self.decisions],
            "errors": [e.model_dump(mode="json") for e in self.errors],
        }


# --- text --------------------------------------------------------------------------------


def _human_size(size: int) -> str:
    if size < 1024:
        return f"{size} B"
    scaled = float(size)
    for unit in ("KiB", "MiB", "GiB"):
        scaled /= 1024
        if scaled < 1024 or unit == "GiB":
            break
    return f"{scaled:.1f} {unit}"


def describe(report: PruneReport, *, verbose: bool = False) -> Iterable[str]:
    """Lines for people: each removal, each entry kept for a reason, young ones counted."""
    limits = ", ".join(f"{a.value} {format_duration(report.limits.of(a))}" for a in Area)
    mode = " (dry run: nothing was removed)" if report.dry_run else ""
    yield f"flowdrop prune: limits {limits}{mode}"
    verb = "would remove" if report.dry_run else "removed"
    for decision in report.decisions:
        young = decision.reason in {Reason.YOUNG, Reason.NEVER}
        where = f"{decision.area.value}/{decision.name}"
        if decision.removed:
            yield f"  {verb:<12} {where:<48} {decision.detail}"
        elif decision.error is not None:
            error = decision.error
            yield f"  {'error':<12} {where:<48} {error.code.value}: {error.message}"
        elif verbose or not young:
            yield f"  {'kept':<12} {where:<48} {decision.detail} ({decision.reason.value})"
    for area in Area:
        waiting = [d for d in report.kept(area) if d.reason in {Reason.YOUNG, Reason.NEVER}]
        if waiting and not verbose:
            yield f"  {'kept':<12} {len(waiting)} in {area.value}/ younger than the limit (or kept forever)"
    for error in report.errors:
        yield f"error: {error.code.value}: {error.message}"
    freed = sum(d.size_bytes for d in report.removed())
    failed = sum(d.error is not None for d in report.decisions)
    yield (
        f"{verb} {len(report.removed())} ({_human_size(freed)}), kept {len(report.kept())}"
        + (f", {failed} could not be removed" if failed else "")
    )
