"""The spool at a glance for people with a browser and no API: one static HTML page with a row
per request (state, phase, message, capture status and reason, duration, links to the result
file and the run report) that reloads itself; failed, rejected and skipped rows stand out with
their code and message.

``flowdrop status --html FILE [--watch]`` writes it on demand; with ``status_page: true`` the
daemon keeps ``outbox/index.html`` current from a background thread (:class:`StatusPageKeeper`),
never on a request's path.
"""

from __future__ import annotations

import html
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import structlog

from flowdrop import __version__
from flowdrop.core.contract import QuarantineReason, RunResult, StatusFile
from flowdrop.daemon.spool import (
    REASON_SUFFIX,
    RESULT_SUFFIX,
    STATUS_SUFFIX,
    Spool,
    read_result_file,
    read_status_file,
)

PAGE_NAME = "index.html"
REFRESH_SECONDS = 5
MAX_ROWS = 300
ALERT_STATES = ("failed", "rejected")

log = structlog.get_logger()


@dataclass
class Row:
    request_id: str
    state: str
    phase: str
    message: str
    capture: str
    capture_reason: str
    duration: str
    updated: datetime
    code: str = ""
    result: Path | None = None
    report: Path | None = None
    quarantined: bool = False

    @property
    def alert(self) -> bool:
        return self.state in ALERT_STATES or "skip" in self.capture.lower()


def _newest(directory: Path, suffix: str, limit: int) -> list[Path]:
    """The ``limit`` most recently changed files ending in ``suffix`` (one scandir, no parse)."""
    found: list[tuple[int, Path]] = []
    try:
        with os.scandir(directory) as entries:
            for entry in entries:
                if entry.name.endswith(suffix) and not entry.name.startswith("."):
                    try:
                        found.append((entry.stat().st_mtime_ns, Path(entry.path)))
                    except OSError:
                        continue
    except OSError:
        return []
    found.sort(reverse=True)
    return [path for _, path in found[:limit]]


def _duration(status: StatusFile, result: RunResult | None) -> str:
    total = (result.timings.get("total") if result else None) or None
    seconds = total / 1000 if total else (status.updated_at - status.accepted_at).total_seconds()
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _row(status: StatusFile, spool: Spool, runs_root: Path | None) -> Row:
    result_path = spool.outbox / f"{status.request_id}{RESULT_SUFFIX}"
    result = read_result_file(result_path) if status.state.terminal else None
    capture = result.capture if result else None
    report = None
    summary = result.run if result else None
    relative = getattr(summary, "report", None)
    if relative and runs_root is not None:
        report = runs_root / str(relative)
    message = status.message
    code = ""
    if result is not None and result.error is not None:
        code, message = result.error.code.value, result.error.message
    return Row(
        request_id=status.request_id,
        state=status.state.value,
        phase=status.phase.value if status.phase else "",
        message=message,
        capture=capture.status.value if capture else "",
        capture_reason=capture.reason if capture else "",
        duration=_duration(status, result),
        updated=status.updated_at,
        code=code,
        result=result_path if result is not None else None,
        report=report,
    )


def _quarantined(path: Path) -> Row | None:
    try:
        reason = QuarantineReason.model_validate_json(path.read_bytes())
    except (OSError, ValueError):
        return None
    return Row(
        request_id=reason.request_id or reason.file_name,
        state="rejected",
        phase="",
        message=reason.error.message,
        capture="",
        capture_reason="",
        duration="",
        updated=reason.quarantined_at,
        code=reason.error.code.value,
        result=path,
        quarantined=True,
    )


def collect(spool: Spool, runs_root: Path | None, limit: int = MAX_ROWS) -> list[Row]:
    """The newest ``limit`` requests of the outbox, plus quarantined files without a status."""
    rows = [
        _row(status, spool, runs_root)
        for path in _newest(spool.outbox, STATUS_SUFFIX, limit)
        if (status := read_status_file(path)) is not None
    ]
    known = {row.request_id for row in rows}
    for path in _newest(spool.quarantine, REASON_SUFFIX, limit):
        row = _quarantined(path)
        if row is not None and row.request_id not in known:
            rows.append(row)
    rows.sort(key=lambda r: r.updated, reverse=True)
    return rows[:limit]


def _link(target: Path | None, page: Path, label: str) -> str:
    if target is None:
        return ""
    href = os.path.relpath(target, page.parent)
    return f'<a href="{html.escape(href)}">{html.escape(label)}</a>'


def render(rows: list[Row], page: Path, *, title: str, now: datetime | None = None) -> str:
    moment = now or datetime.now(UTC)
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.state] = counts.get(row.state, 0) + 1
    summary = ", ".join(f"{n} {state}" for state, n in sorted(counts.items())) or "no requests yet"
    body = []
    for row in rows:
        cls = ' class="alert"' if row.alert else ""
        code = f"<strong>{html.escape(row.code)}</strong>: " if row.code else ""
        capture = html.escape(row.capture) + (
            f"<br><small>{html.escape(row.capture_reason)}</small>" if row.capture_reason else ""
        )
        links = " ".join(
            part
            for part in (
                _link(row.result, page, "reason" if row.quarantined else "result"),
                _link(row.report, page, "report"),
            )
            if part
        )
        body.append(
            f"<tr{cls}><td><code>{html.escape(row.request_id)}</code></td>"
            f'<td><span class="state {html.escape(row.state)}">{html.escape(row.state)}</span></td>'
            f"<td>{html.escape(row.phase)}</td><td>{code}{html.escape(row.message)}</td>"
            f"<td>{capture}</td><td class=num>{html.escape(row.duration)}</td>"
            f"<td>{row.updated:%Y-%m-%d %H:%M:%S}Z</td><td>{links}</td></tr>"
        )
    return (
        "<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta http-equiv="refresh" content="{REFRESH_SECONDS}">'
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><p class=sub>{html.escape(summary)} · written "
        f"{moment:%Y-%m-%d %H:%M:%S}Z by flowdrop {__version__} · reloads every "
        f"{REFRESH_SECONDS} s</p><div class=scroll><table><tr><th>request</th><th>state</th>"
        "<th>phase</th><th>message</th><th>capture</th><th>duration</th><th>updated</th>"
        f"<th>files</th></tr>{''.join(body)}</table></div></body></html>\n"
    )


def write_page(spool: Spool, runs_root: Path | None, page: Path) -> Path:
    """Collect and write the page atomically (a reloading browser never sees half a page)."""
    # No absolute host path in the page: it may live in the outbox (docs/protocol.md).
    text = render(collect(spool, runs_root), page, title=f"flowdrop spool · {spool.instance}")
    temporary = page.with_name(f".tmp-{page.name}.{os.getpid()}.{threading.get_ident()}")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, page)
    return page


class StatusPageKeeper:
    """Keeps ``outbox/index.html`` current from its own thread: at most once a second it looks
    at what the page shows — the outbox's status and result files — and rewrites the page when
    they changed (and every ``max_age`` seconds anyway, so durations of running requests move).

    The outbox directory's mtime alone cannot say it: the page's own rename changes it, and a
    request's status renamed between that rename and the next look would be taken for it.
    The files are only listed when the directory's mtime moved.
    """

    def __init__(
        self,
        spool: Spool,
        runs_root: Path | None,
        *,
        interval: float = 1.0,
        max_age: float = 10.0,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.spool, self.runs_root = spool, runs_root
        self.page = spool.outbox / PAGE_NAME
        self.interval, self.max_age = interval, max_age
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._dir_seen: int | None = None
        self._seen: tuple[int, int] | None = None
        self._written = 0.0
        self.writes = 0
        self._clock = clock or time.monotonic

    def _outbox_mtime(self) -> int | None:
        try:
            return self.spool.outbox.stat().st_mtime_ns
        except OSError:
            return None

    def _shown(self) -> tuple[int, int] | None:
        """(how many, newest mtime) of the outbox's status and result files."""
        count = newest = 0
        try:
            with os.scandir(self.spool.outbox) as entries:
                for entry in entries:
                    name = entry.name
                    if name.startswith(".") or not name.endswith((STATUS_SUFFIX, RESULT_SUFFIX)):
                        continue
                    count += 1
                    newest = max(newest, entry.stat(follow_symlinks=False).st_mtime_ns)
        except OSError:
            return None
        return count, newest

    def tick(self, now: float) -> bool:
        """Rewrite when the outbox's statuses or results changed, or the page is old."""
        fresh = now - self._written < self.max_age
        directory = self._outbox_mtime()
        if directory == self._dir_seen and self._seen is not None and fresh:
            return False
        self._dir_seen = directory
        shown = self._shown()  # read before the page is made: a later change shows next time
        if shown == self._seen and fresh:
            return False
        try:
            write_page(self.spool, self.runs_root, self.page)
        except OSError as exc:
            log.warning("status_page_failed", error=str(exc))
            return False
        self._seen, self._written = shown, now
        self.writes += 1
        return True

    def _run(self, stop: threading.Event) -> None:
        while not stop.wait(self.interval):
            self.tick(self._clock())

    @property
    def running(self) -> bool:
        return self._thread is not None

    def apply(self, enabled: bool) -> None:
        """Start or stop keeping the page (at start and on every reload)."""
        if enabled and not self.running:
            self.start()
        elif not enabled and self.running:
            self.stop()

    def start(self) -> None:
        self._stop = threading.Event()
        self._dir_seen = self._seen = None  # write at once: the page may be stale
        self.tick(self._clock())
        self._thread = threading.Thread(
            target=self._run, args=(self._stop,), name="status-page", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._thread = None


_CSS = """
body{margin:0 auto;max-width:1500px;padding:12px 16px;color:#1d2733;
font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
h1{font-size:1.3rem;margin:6px 0;overflow-wrap:anywhere}.sub{color:#5b6775;margin:0 0 10px}
.scroll{overflow-x:auto}table{border-collapse:collapse;font-size:13px;width:100%}
th,td{border:1px solid #d8dee6;padding:3px 8px;text-align:left;vertical-align:top;
overflow-wrap:anywhere}th{background:#f3f5f8}td.num{text-align:right}
tr.alert td{background:#fdecea}tr.alert strong{color:#b3261e}
.state{padding:0 6px;border-radius:8px;background:#e8f0fe}.state.succeeded{background:#e6f4ea}
.state.failed,.state.rejected{background:#b3261e;color:#fff}.state.running{background:#fff4ce}
small{color:#5b6775}
"""


def html_command(
    spool: Spool, runs_root: Path, page: Path, *, watch: bool, interval: float = 2.0
) -> int:
    """``flowdrop status --html FILE [--watch]``."""
    write_page(spool, runs_root, page)
    print(f"status page written to {page}; open file://{page.resolve()}")
    if not watch:
        return 0
    print(f"rewriting it every {interval:g} s; Ctrl-C stops")
    try:
        while True:
            time.sleep(interval)
            write_page(spool, runs_root, page)
    except KeyboardInterrupt:
        return 0
