"""The capture manifest's conventions (§4.6)."""

from __future__ import annotations

from datetime import UTC, datetime

from flowdrop.core.telemetry.manifest import format_utc


def test_format_utc_has_seven_fraction_digits() -> None:
    """Timestamps follow .NET's round-trip format."""
    assert (
        format_utc(datetime(2025, 1, 2, 3, 4, 5, 6, tzinfo=UTC)) == "2025-01-02T03:04:05.0000060Z"
    )
