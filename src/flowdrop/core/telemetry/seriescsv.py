"""Series CSVs in, bundle CSVs out (``RunArtifactReader`` values + ``GapInjector``, §4.4-§4.5).

Reads a canonical ``bin_index,value`` series (an empty value is a gap), applies the gap and
NaN/∞ options with their warning codes, and renders the ``bin_index,classId,value`` bundle CSV
with .NET "G17" numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from flowdrop.core.errors import ErrorCode, FlowdropError
from flowdrop.core.numerics import format_g17
from flowdrop.core.telemetry.manifest import CaptureWarning

CSV_HEADER = "bin_index,classId,value"


class GapHandling(Enum):
    IGNORE = 0
    WARN_ONLY = 1
    FILL_WITH_ZERO = 2


@dataclass(frozen=True)
class GapOptions:
    """FlowTime's default: keep NaN (with a warning) and ignore missing values."""

    fill_nan_with_zero: bool = False
    missing_value_handling: GapHandling = GapHandling.IGNORE


def capture_failed(message: str, **details: Any) -> FlowdropError:
    return FlowdropError(ErrorCode.CAPTURE_FAILED, message, **details)


def read_series_csv(path: Path, shown: str) -> list[float | None]:
    """Values of a canonical ``bin_index,value`` CSV; ``None`` marks an empty value (a gap)."""
    if not path.is_file():
        raise capture_failed(f"Series file not found: {shown}", file=shown)
    lines = path.read_text(encoding="utf-8-sig").splitlines()
    if not lines:
        raise capture_failed(f"Series file {shown} is empty.", file=shown)
    values: list[float | None] = []
    for line in lines[1:]:
        if not line.strip():
            continue
        if "," not in line:
            raise capture_failed(f"Invalid CSV row '{line}' in {shown}.", file=shown)
        raw = line.split(",", 1)[1].strip()
        values.append(_parse_value(raw, shown))
    return values


def _parse_value(raw: str, shown: str) -> float | None:
    if raw == "":
        return None
    lowered = raw.lower()
    if lowered == "nan":
        return math.nan
    if lowered in {"infinity", "+infinity", "∞"}:
        return math.inf
    if lowered in {"-infinity", "-∞"}:
        return -math.inf
    try:
        return float(raw.replace(",", ""))
    except ValueError:
        raise capture_failed(f"Unable to parse value '{raw}' from {shown}.", file=shown) from None


def process_gaps(
    values: list[float | None], node_id: str, metric: str, options: GapOptions
) -> tuple[list[float | None], list[CaptureWarning]]:
    out: list[float | None] = []
    warnings: list[CaptureWarning] = []
    for i, value in enumerate(values):
        if value is None:
            if options.missing_value_handling is not GapHandling.IGNORE:
                warnings.append(
                    CaptureWarning(
                        "data_gap",
                        f"Missing value at bin {i} for {node_id}:{metric}.",
                        node_id,
                        (i,),
                    )
                )
            fill = options.missing_value_handling is GapHandling.FILL_WITH_ZERO
            out.append(0.0 if fill else None)
        elif math.isnan(value) or math.isinf(value):
            if options.fill_nan_with_zero:
                message = f"Filled NaN/∞ at bin {i} for {node_id}:{metric}."
                warnings.append(CaptureWarning("nan_fill", message, node_id, (i,)))
                out.append(0.0)
            else:
                message = f"Detected NaN/∞ at bin {i} for {node_id}:{metric}."
                warnings.append(CaptureWarning("nan_detected", message, node_id, (i,)))
                out.append(value)
        else:
            out.append(value)
    return out, warnings


def render_csv(values: list[float | None], class_id: str) -> bytes:
    """``bin_index,classId,value`` rows, G17 numbers, empty value for a gap; UTF-8, no BOM, LF."""
    rows = [CSV_HEADER]
    rows.extend(
        f"{i},{class_id},{'' if v is None else format_g17(v)}" for i, v in enumerate(values)
    )
    return ("\n".join(rows) + "\n").encode("utf-8")
