"""Parameter merging, .NET-style value formatting and textual ``${name}`` substitution (§2)."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

from flowdrop.core.errors import ErrorCode, FlowdropError
from flowdrop.core.hashing import dotnet_json
from flowdrop.core.numerics import format_shortest
from flowdrop.core.templating.template import ParameterSpec, Template

PLACEHOLDER = re.compile(r"\$\{([^}]+)\}")


def _invalid(message: str, **details: Any) -> FlowdropError:
    return FlowdropError(ErrorCode.PARAMETER_INVALID, message, **details)


def _element(spec: ParameterSpec, index: int, raw: Any) -> float | int:
    name = spec.name
    if isinstance(raw, bool):
        raise _invalid(
            f"Parameter '{name}' element at index {index} must be numeric.",
            path=f"parameters.{name}[{index}]",
            value=raw,
        )
    if isinstance(raw, int | float):
        value = float(raw)
    else:
        try:
            value = float(str(raw).strip())
        except ValueError:
            raise _invalid(
                f"Parameter '{name}' element at index {index} must be numeric.",
                path=f"parameters.{name}[{index}]",
                value=str(raw),
            ) from None
    if not math.isfinite(value):
        raise _invalid(
            f"Parameter '{name}' element at index {index} must be numeric.",
            path=f"parameters.{name}[{index}]",
            value=str(raw),
        )
    is_int = (spec.array_of or "").lower() == "int"
    if is_int and abs(value - round(value)) > 1e-9:
        raise _invalid(
            f"Parameter '{name}' element at index {index} must be an integer.",
            path=f"parameters.{name}[{index}]",
            value=value,
        )
    if spec.minimum is not None and value < spec.minimum:
        raise _invalid(
            f"Parameter '{name}' element at index {index} ({format_shortest(value)}) is below "
            f"minimum {format_shortest(spec.minimum)}.",
            path=f"parameters.{name}[{index}]",
            value=value,
        )
    if spec.maximum is not None and value > spec.maximum:
        raise _invalid(
            f"Parameter '{name}' element at index {index} ({format_shortest(value)}) exceeds "
            f"maximum {format_shortest(spec.maximum)}.",
            path=f"parameters.{name}[{index}]",
            value=value,
        )
    return round(value) if is_int else value


def normalize_array(spec: ParameterSpec, value: Any) -> list[float | int]:
    """Check and convert an ``array`` parameter value (§1.4)."""
    if value is None:
        raise _invalid(
            f"Parameter '{spec.name}' requires an array value.", path=f"parameters.{spec.name}"
        )
    if isinstance(value, str):
        text = value.strip()
        parsed: Any = None
        if text.startswith("["):
            try:
                parsed = json.loads(text)
            except json.JSONDecodeError:
                parsed = None
        if not isinstance(parsed, list):
            raise _invalid(
                f"Parameter '{spec.name}' expects an array value.",
                path=f"parameters.{spec.name}",
                value=value,
            )
        value = parsed
    if isinstance(value, list | tuple):
        return [_element(spec, i, item) for i, item in enumerate(value)]
    raise _invalid(
        f"Parameter '{spec.name}' expects an array value.",
        path=f"parameters.{spec.name}",
        value=value if isinstance(value, int | float | bool) else str(value),
    )


def merge_parameters(template: Template, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Defaults (raw text, as upstream reads them) overlaid by the request's overrides."""
    merged: dict[str, Any] = {}
    for spec in template.parameters:
        default: Any = spec.default_text if spec.default_text is not None else spec.default
        if spec.type == "array":
            if default is not None:
                merged[spec.name] = normalize_array(spec, default)
        elif default is not None:
            merged[spec.name] = default
    for name, value in overrides.items():
        declared = template.parameter(name)
        if declared is not None and declared.type == "array":
            merged[name] = normalize_array(declared, value)
        else:
            merged[name] = value
    for spec in template.parameters:
        if spec.type == "array" and spec.name not in merged:
            normalize_array(spec, None)
    return merged


def format_value(value: Any) -> str:
    """Format a parameter value for textual substitution (§2.2 step 2)."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return format_shortest(value)
    if isinstance(value, str):
        return _format_string(value)
    if isinstance(value, Mapping):
        return dotnet_json(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(format_value(item) for item in value) + "]"
    return str(value)


def _format_string(value: str) -> str:
    if value.startswith(("[", "{")):
        return value
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value
    if value == "" or any(ch.isspace() or ch in ":#" for ch in value):
        return f'"{value}"'
    return value


def substitute(text: str, values: Mapping[str, Any]) -> str:
    """Replace ``${name}`` for every merged parameter; unknown placeholders stay in place."""
    for name, value in values.items():
        try:
            formatted = format_value(value)
        except ValueError as exc:  # a mapping holding NaN or an infinity: not writable as JSON
            msg = f"Parameter '{name}' cannot be substituted: {exc}."
            raise FlowdropError(ErrorCode.PARAMETER_INVALID, msg, parameter=name) from None
        token = "${" + name + "}"
        if isinstance(value, list | tuple | Mapping):
            text = text.replace(f'"{token}"', formatted).replace(f"'{token}'", formatted)
        text = text.replace(token, formatted)
    return text
