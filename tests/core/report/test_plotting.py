from __future__ import annotations

import sys
from pathlib import Path

import pytest

from flowdrop.core.errors import ErrorCode, FlowdropError
from flowdrop.core.report import build_report, plotting


def test_without_the_extra_a_report_fails_with_a_structured_error_naming_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    plotting.plotly_js.cache_clear()
    monkeypatch.setitem(sys.modules, "plotly", None)  # import plotly -> ImportError
    monkeypatch.setitem(sys.modules, "plotly.offline", None)
    try:
        with pytest.raises(FlowdropError) as caught:
            build_report(tmp_path)
    finally:
        plotting.plotly_js.cache_clear()
    assert caught.value.code is ErrorCode.REPORT_UNAVAILABLE
    assert "flowdrop[report]" in caught.value.message
    assert caught.value.details["extra"] == "report"


def test_the_plotting_library_is_embedded_not_linked() -> None:
    js = plotting.plotly_js()
    assert len(js) > 1_000_000 and "plotly" in js[:2000].lower()
