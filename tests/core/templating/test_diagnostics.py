"""The TEMPLATE_INVALID helper and value coercions."""

from __future__ import annotations

from flowdrop.core.errors import ErrorCode
from flowdrop.core.templating.diagnostics import invalid, is_number, text


def test_invalid_carries_path_and_json_safe_value() -> None:
    """Numbers stay numbers, anything else becomes text; absent details are omitted."""
    error = invalid("Bad.", "nodes[1].values", [1, 2])
    assert error.code is ErrorCode.TEMPLATE_INVALID
    assert (error.message, error.details) == (
        "Bad.",
        {"path": "nodes[1].values", "value": "[1, 2]"},
    )
    assert invalid("Bad.", "grid.bins", 0).details == {"path": "grid.bins", "value": 0}
    assert invalid("Bad.").details == {}


def test_text_and_is_number() -> None:
    """text trims and maps None to empty; booleans are not numbers."""
    assert (text(None), text("  x "), text(3)) == ("", "x", "3")
    assert is_number(1.5) and not is_number(True) and not is_number("1")
