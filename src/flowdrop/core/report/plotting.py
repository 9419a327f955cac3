"""The plotting library, imported only when a report is asked for.

plotly.js is embedded in every report (no CDN, no network): the daemon and the rest of core
never import plotly, and a host without the ``report`` extra fails with ``report_unavailable``
naming the extra instead of an ImportError.
"""

from __future__ import annotations

import functools

from flowdrop.core.errors import ErrorCode, FlowdropError

EXTRA = "report"


def unavailable(reason: str) -> FlowdropError:
    return FlowdropError(
        ErrorCode.REPORT_UNAVAILABLE,
        f"Run reports need the optional plotting dependency ({reason}): "
        f"install it with pip install 'flowdrop[{EXTRA}]'.",
        extra=EXTRA,
        package="plotly",
    )


@functools.cache
def plotly_js() -> str:
    """The minified plotly.js bundle shipped inside the plotly wheel."""
    try:
        from plotly.offline import get_plotlyjs
    except ImportError:
        raise unavailable("plotly is not installed") from None
    text: str = get_plotlyjs()
    return text


def require() -> None:
    """Fail early (before any work) when reports cannot be written on this host."""
    plotly_js()
