"""Time-of-day profiles (§1.8.2, §16.3)."""

from __future__ import annotations

import pytest

from flowdrop.core.errors import ErrorCode, FlowdropError
from flowdrop.core.templating.profiles import normalize, resolve_profile

WEEKDAY_12 = [
    0.2716127004086766, 0.22760138321282627, 0.2892172272870164, 0.6224457717698839,
    1.3077648538195505, 1.8233259981138028, 1.9239232945614595, 1.6724300534423115,
    1.483810122602957, 1.2071675573718958, 0.7243005344231342, 0.4464005029864838,
]  # fmt: skip


def test_weekday_office_resampled_to_12_bins_is_exact() -> None:
    """The derived 12-bin weights of weekday-office (§16.3), bit for bit."""
    assert resolve_profile("builtin", "weekday-office", None, 12) == WEEKDAY_12


@pytest.mark.parametrize(
    ("name", "first"),
    [
        ("weekday-office", 0.27925016160310284),
        ("three-shift", 0.9083263246425586),
        ("hub-rush-hour", 0.26460859977949214),
    ],
)
def test_builtin_first_weight_at_288_bins(name: str, first: float) -> None:
    """At 288 bins the profile is copied and re-normalised (§16.3 derived values)."""
    weights = resolve_profile("builtin", name, None, 288)
    assert len(weights) == 288 and weights[0] == first


def test_inline_weights_are_normalised_to_mean_one() -> None:
    """[0.5, 1.5, 1.0] already has mean 1."""
    assert resolve_profile("inline", None, [0.5, 1.5, 1.0], 3) == [0.5, 1.5, 1.0]
    assert resolve_profile("inline", None, [1, 3], 2) == [0.5, 1.5]


@pytest.mark.parametrize(
    ("kind", "name", "weights", "message"),
    [
        ("builtin", "night-owl", None, "Unknown builtin profile 'night-owl'."),
        (
            "inline",
            None,
            [1.0],
            "Inline profile weights must contain exactly 3 values to match grid.bins.",
        ),
        ("weird", None, None, "Profile kind 'weird' is not supported. Use 'builtin' or 'inline'."),
        ("inline", None, [0.0, 0.0, 0.0], "Profile weights must have a positive average."),
    ],
)
def test_profile_errors(
    kind: str, name: str | None, weights: list[float] | None, message: str
) -> None:
    """Bad profiles are TEMPLATE_INVALID with FlowTime's message."""
    with pytest.raises(FlowdropError) as caught:
        resolve_profile(kind, name, weights, 3)
    assert caught.value.code is ErrorCode.TEMPLATE_INVALID
    assert caught.value.message == message


def test_normalize_rejects_empty() -> None:
    """An empty weight list has no positive average."""
    with pytest.raises(FlowdropError):
        normalize([])
