"""Helpers shared by the template checks: the TEMPLATE_INVALID error and value coercions."""

from __future__ import annotations

from typing import Any

from flowdrop.core.errors import ErrorCode, FlowdropError


def invalid(message: str, path: str | None = None, value: Any = None) -> FlowdropError:
    """TEMPLATE_INVALID with ``path`` and ``value`` details (never a host path)."""
    details: dict[str, Any] = {}
    if path is not None:
        details["path"] = path
    if value is not None:
        details["value"] = value if isinstance(value, int | float | bool) else str(value)
    return FlowdropError(ErrorCode.TEMPLATE_INVALID, message, **details)


def text(value: Any) -> str:
    """Trimmed string form; None is empty."""
    return "" if value is None else str(value).strip()


def is_number(value: Any) -> bool:
    """A YAML number (booleans excluded)."""
    return isinstance(value, int | float) and not isinstance(value, bool)
