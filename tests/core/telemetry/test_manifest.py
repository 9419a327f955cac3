"""The capture manifest's conventions (§4.6)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from flowdrop.core.telemetry.manifest import build_manifest

RUN = {"runId": "run_x", "scenarioHash": "sha256:00"}
INDEX = {"grid": {"bins": 2, "binSize": 5, "binUnit": "minutes"}}


def _captured_at(now: datetime) -> str:
    manifest = build_manifest(RUN, INDEX, {}, [], [], now)
    captured: str = manifest["provenance"]["capturedAtUtc"]
    return captured


def test_captured_at_has_seven_fraction_digits() -> None:
    """Timestamps follow .NET's round-trip format."""
    assert (
        _captured_at(datetime(2025, 1, 2, 3, 4, 5, 6, tzinfo=UTC)) == "2025-01-02T03:04:05.0000060Z"
    )


def test_a_non_utc_clock_is_recorded_in_utc() -> None:
    """The manifest's own formatter printed local wall time with a ``Z`` under a non-UTC clock."""
    local = datetime(2025, 1, 2, 5, 4, 5, 6, tzinfo=timezone(timedelta(hours=2)))
    assert _captured_at(local) == "2025-01-02T03:04:05.0000060Z"
