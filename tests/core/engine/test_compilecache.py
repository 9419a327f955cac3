"""The compile cache: one generation per (template, mode, parameters), private documents."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from flowdrop.core.engine.compilecache import CompileCache
from flowdrop.core.errors import ErrorCode, FlowdropError
from flowdrop.core.templating.model import generate_model
from flowdrop.core.templating.template import parse_template
from flowdrop.daemon.testing import mini_template

TEMPLATE = parse_template(mini_template("cc", None))
EARLY = datetime(2025, 1, 1, tzinfo=UTC)
LATE = datetime(2025, 6, 1, tzinfo=UTC)


def test_a_hit_equals_a_fresh_generation_at_its_own_time() -> None:
    cache = CompileCache()
    cache.model(TEMPLATE, {"bins": 6}, now=EARLY)
    hit = cache.model(TEMPLATE, {"bins": 6}, now=LATE)
    assert hit.document == generate_model(TEMPLATE, {"bins": 6}, now=LATE).document
    stats = cache.stats()
    assert (stats.hits, stats.misses, stats.entries) == (1, 1, 1)


def test_parameters_and_mode_are_part_of_the_key() -> None:
    cache = CompileCache()
    cache.model(TEMPLATE, {"bins": 6})
    cache.model(TEMPLATE, {"bins": 6.0})
    cache.model(TEMPLATE, {"bins": 6}, mode="telemetry")
    assert cache.stats().misses == 3


def test_a_caller_cannot_change_the_cached_model() -> None:
    cache = CompileCache()
    first = cache.model(TEMPLATE, {}, now=EARLY)
    first.document["provenance"]["generatedAt"] = "changed"
    first.set_values("total_arrivals", [1.0, 2.0, 3.0, 4.0])
    again = cache.model(TEMPLATE, {}, now=EARLY)
    assert again.document == generate_model(TEMPLATE, {}, now=EARLY).document


def test_a_rejection_is_remembered_and_raised_afresh() -> None:
    cache = CompileCache()
    errors = []
    for _ in range(2):
        with pytest.raises(FlowdropError) as caught:
            cache.model(TEMPLATE, {"bins": 0})
        errors.append(caught.value)
    assert errors[0] is not errors[1]
    assert errors[0].code is errors[1].code is ErrorCode.TEMPLATE_INVALID
    assert errors[0].message == errors[1].message
    assert cache.stats().misses == 1


def test_the_lru_is_bounded_and_size_zero_disables_it() -> None:
    cache = CompileCache(size=2)
    for bins in (4, 5, 6):
        cache.model(TEMPLATE, {"bins": bins})
    assert cache.stats().entries == 2 and cache.stats().evictions == 1
    cache.resize(0)
    cache.model(TEMPLATE, {"bins": 4})
    assert cache.stats().entries == 0
