"""The report as one self-contained HTML page: tables rendered here, charts drawn by the
inline renderer (static/report.js) with the inline plotly.js from the embedded JSON.

Nothing in the page refers to another file or host: the test suite loads it in headless
Chromium with a network log and fails on any request.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from flowdrop.core.numerics import FloatArray
from flowdrop.core.report.layout import Chart

SECTIONS = (
    ("telemetry", "Capture vs replay"),
    ("nodes", "Nodes (topology order)"),
    ("classes", "Per-class breakdown"),
    ("edges", "Edge flows"),
    ("other", "Every remaining series"),
)
# Collects errors before plotly.js loads, so a failure anywhere shows up in the DOM (tests read it).
_ERROR_HOOK = (
    "window.__flowdropError=function(m){var d=document.documentElement;"
    "d.setAttribute('data-errors',(d.getAttribute('data-errors')||'')+String(m)+'\\n');};"
    "window.addEventListener('error',function(e){window.__flowdropError(e.message);});"
    "window.addEventListener('unhandledrejection',function(e){window.__flowdropError(e.reason);});"
    "var ce=console.error;console.error=function(){window.__flowdropError("
    "Array.prototype.join.call(arguments,' '));return ce.apply(console,arguments);};"
)


@dataclass
class Page:
    title: str
    subtitle: str
    facts: list[tuple[str, str]]
    grid: dict[str, Any]
    charts: list[Chart]
    values: Mapping[str, FloatArray]
    tables: list[tuple[str, str]] = field(default_factory=list)  # (section, html) before charts


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], bad: Iterable[bool] = ()) -> str:
    flags = list(bad)
    head = "".join(f"<th>{esc(h)}</th>" for h in headers if h)
    body = []
    for i, row in enumerate(rows):
        cls = ' class="bad"' if i < len(flags) and flags[i] else ""
        cells = "".join(
            f'<td class="num">{esc(c)}</td>' if isinstance(c, int | float) else f"<td>{esc(c)}</td>"
            for c in row
        )
        body.append(f"<tr{cls}>{cells}</tr>")
    header = f"<tr>{head}</tr>" if head else ""
    return f'<div class="scroll"><table>{header}{"".join(body)}</table></div>'


def _number(value: float) -> str:
    return f"{value:.10g}" if math.isfinite(value) else "null"


def _payload(page: Page) -> str:
    keys = dict.fromkeys(t.key for c in page.charts for r in c.rows for t in r.traces)
    values = ",".join(
        f"{json.dumps(k)}:[{','.join(_number(v) for v in page.values[k].tolist())}]" for k in keys
    )
    charts = [
        {"rows": [{"title": r.title, "traces": [t.__dict__ for t in r.traces]} for r in c.rows]}
        for c in page.charts
    ]
    text = f'{{"grid":{json.dumps(page.grid)},"charts":{json.dumps(charts)},"values":{{{values}}}}}'
    return text.replace("</", "<\\/")  # never end the script element early


def _static(name: str) -> str:
    return (resources.files("flowdrop.core.report") / "static" / name).read_text(encoding="utf-8")


def chart_height(rows: int) -> int:
    """Pixels of a chart with ``rows`` stacked rows (report.js draws it at this height)."""
    return 110 + 170 * rows


def _chart_html(index: int, chart: Chart) -> str:
    ids = ",".join(chart.series_ids)
    # The height is reserved before the chart is drawn, so nothing moves while charts draw as
    # they scroll into view (and a #section link lands where it should).
    return (
        f'<div class="chart"><h3>{esc(chart.title)}</h3>'
        f'<div class="plot" data-chart="{index}" data-series="{esc(ids)}" '
        f'style="height:{chart_height(len(chart.rows))}px"></div></div>'
    )


def render(page: Page, plotly_js: str) -> str:
    """The whole document."""
    parts: list[str] = []
    nav: list[str] = []
    for key, heading in SECTIONS:
        charts = [(i, c) for i, c in enumerate(page.charts) if c.section == key]
        tables = [t for s, t in page.tables if s == key]
        if not charts and not tables:
            continue
        nav.append(f'<a href="#{key}">{esc(heading)} ({len(charts)})</a>')
        parts.append(f'<section id="{key}"><h2>{esc(heading)}</h2>')
        parts.extend(tables)
        parts.extend(_chart_html(i, c) for i, c in charts)
        parts.append("</section>")
    facts = table(("", ""), page.facts)
    header_tables = "".join(t for s, t in page.tables if s == "header")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(page.title)}</title><script>{_ERROR_HOOK}</script>"
        f"<style>{_static('report.css')}</style></head><body>"
        f'<h1>{esc(page.title)}</h1><p class="sub">{esc(page.subtitle)}</p>'
        f"{facts}{header_tables}<nav>{''.join(nav)}</nav>{''.join(parts)}"
        f'<script type="application/json" id="flowdrop-data">{_payload(page)}</script>'
        f"<script>{plotly_js}</script><script>{_static('report.js')}</script>"
        "</body></html>\n"
    )
