"""Request-supplied parameter overrides checked against the template's declarations.

A deliberate rule stricter than upstream: FlowTime enforces neither the type nor the
``min``/``max`` of scalar parameters (engine reference §1.4), so a wrong value surfaces, if at
all, as a schema failure of the substituted template ("#/grid/bins: ..."), and an out-of-range
value runs. For a daemon user a request's own bad value is ``parameter_invalid`` naming the
parameter, the value and the rule. Only the values a request supplies are checked, here in the
orchestration layer; template defaults and the engine (``flowdrop simulate``) stay faithful.

Rules (JSON types as the request file holds them):
  integer  a number with no fractional part (``6`` or ``6.0``); booleans are not integers
  number   a finite number; booleans are not numbers
  boolean  ``true`` or ``false``
  string   a string
  array    a JSON array (or JSON array text, as upstream accepts) of finite numbers, integers
           for ``arrayOf: int``
  ``min``/``minimum`` and ``max``/``maximum`` bound integer and number values and every array
  element.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from flowdrop.core.errors import ErrorCode, FlowdropError
from flowdrop.core.numerics import format_shortest
from flowdrop.core.templating.template import ParameterSpec, Template

_SHOWN_CHARS = 60
_ARTICLE = {"integer": "an", "array": "an"}


def check_overrides(template: Template, overrides: Mapping[str, Any]) -> None:
    """Raise ``parameter_invalid`` for the first override that breaks its declaration.

    Names the template does not declare are left to the caller; types other than the five
    of the schema are not checked.
    """
    for name, value in overrides.items():
        spec = template.parameter(name)
        if spec is not None:
            _check(spec, value)


def _check(spec: ParameterSpec, value: Any) -> None:
    kind = str(spec.type or "").lower()
    if kind in ("integer", "number"):
        _check_number(spec, value, kind, None)
    elif kind == "boolean" and not isinstance(value, bool):
        raise _type_error(spec, value, "boolean", None)
    elif kind == "string" and not isinstance(value, str):
        raise _type_error(spec, value, "string", None)
    elif kind == "array":
        items = _array_items(value)
        if items is None:
            raise _type_error(spec, value, "array", None)
        element = "integer" if (spec.array_of or "").lower() == "int" else "number"
        for index, item in enumerate(items):
            _check_number(spec, item, element, index)


def _array_items(value: Any) -> list[Any] | None:
    if isinstance(value, list | tuple):
        return list(value)
    if isinstance(value, str) and value.strip().startswith("["):
        try:
            parsed = json.loads(value)
        except ValueError:
            return None
        return parsed if isinstance(parsed, list) else None
    return None


def _check_number(spec: ParameterSpec, value: Any, kind: str, index: int | None) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _type_error(spec, value, kind, index)
    if isinstance(value, float) and not math.isfinite(value):
        raise _type_error(spec, value, kind, index)
    if kind == "integer" and isinstance(value, float) and not value.is_integer():
        raise _type_error(spec, value, kind, index)
    if spec.minimum is not None and value < spec.minimum:
        raise _range_error(spec, value, "minimum", spec.minimum, index)
    if spec.maximum is not None and value > spec.maximum:
        raise _range_error(spec, value, "maximum", spec.maximum, index)


def _subject(spec: ParameterSpec, index: int | None) -> str:
    where = "" if index is None else f" element at index {index}"
    return f"Parameter '{spec.name}'{where}"


def _type_error(spec: ParameterSpec, value: Any, kind: str, index: int | None) -> FlowdropError:
    article = _ARTICLE.get(kind, "a")
    message = f"{_subject(spec, index)} expects {article} {kind} value (got {_shown(value)})."
    return _invalid(message, spec, value, f"type: {kind}", index)


def _range_error(
    spec: ParameterSpec, value: float, rule: str, limit: float, index: int | None
) -> FlowdropError:
    verb = "is below" if rule == "minimum" else "exceeds"
    bound = format_shortest(limit)
    message = f"{_subject(spec, index)} value {_shown(value)} {verb} {rule} {bound}."
    return _invalid(message, spec, value, f"{rule}: {bound}", index)


def _invalid(
    message: str, spec: ParameterSpec, value: Any, rule: str, index: int | None
) -> FlowdropError:
    details: dict[str, Any] = {"parameter": spec.name, "value": _detail_value(value), "rule": rule}
    if index is not None:
        details["index"] = index
    return FlowdropError(ErrorCode.PARAMETER_INVALID, message, **details)


def _shown(value: Any) -> str:
    """The value as the request wrote it (JSON; .NET shortest numbers), cut to 60 characters."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, float):
        text = format_shortest(value)
    elif isinstance(value, int):
        text = _int_text(value)
    else:
        try:
            text = json.dumps(value, ensure_ascii=False, default=str)
        except (TypeError, ValueError, RecursionError):  # odd keys, huge ints, cycles
            text = f"<{type(value).__name__}>"
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 1] + "…"


def _int_text(value: int) -> str:
    try:
        return str(value)
    except ValueError:  # more digits than Python converts to text
        return "<integer>"


def _detail_value(value: Any) -> Any:
    """Scalars as given; long strings and containers as their shortened JSON text."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else _shown(value)
    if isinstance(value, int):
        return value if abs(value) < 2**63 else _shown(value)
    if isinstance(value, str) and len(value) <= _SHOWN_CHARS:
        return value
    return _shown(value)
