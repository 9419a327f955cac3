"""The model YAML emitter: round-trips, quoting, flow-style numeric lists."""

from __future__ import annotations

from typing import Any

import yaml
from hypothesis import given
from hypothesis import strategies as st

from flowdrop.core.templating.yamltext import dump, scalar


def test_strings_that_would_change_type_are_quoted() -> None:
    """'0', 'true', 'null', '1:30' and expressions stay strings after a round trip."""
    for text in ("0", "true", "null", "1:30", "MIN(a, b)", "*", "", "a: b", "#x"):
        assert yaml.safe_load(f"v: {scalar(text)}")["v"] == text


def test_numbers_and_lists() -> None:
    """Numeric lists are flow style; tiny floats keep a dot so YAML 1.1 reads a float."""
    assert dump({"values": [1, 2.5, 1e-05]}) == "values: [1, 2.5, 1.0E-05]\n"
    assert yaml.safe_load(dump({"v": [1e-05]}))["v"] == [1e-05]


keys = st.text(
    st.characters(codec="utf-8", exclude_categories=["Cs", "Cc"]), min_size=1, max_size=8
)
leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(st.characters(codec="utf-8", exclude_categories=["Cs", "Cc"]), max_size=12),
)
documents = st.recursive(
    leaves,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=4)),
    max_leaves=20,
)


@given(st.dictionaries(keys, documents, min_size=1, max_size=5))
def test_dump_round_trips(document: dict[str, Any]) -> None:
    """Whatever the document, safe_load(dump(doc)) == doc."""
    assert yaml.safe_load(dump(document)) == document


def test_remembered_entries_are_told_apart_by_exact_content() -> None:
    """Top-level entries are remembered by content: a sign of zero, a type or a tuple differs."""
    for _ in range(2):
        assert dump({"v": [0.0], "w": 1}) == "v: [0]\nw: 1\n"
        assert dump({"v": [-0.0], "w": True}) == "v: [-0]\nw: true\n"
        assert dump({"v": ("x",), "w": 1.0}) == "v: [x]\nw: 1\n"
        assert dump({"v": {"a": None}}) == "v:\n  a: null\n"
    assert dump({}) == "{}\n"


@given(st.dictionaries(keys, documents, min_size=1, max_size=5))
def test_dump_twice_is_dump_once(document: dict[str, Any]) -> None:
    """The second dump (from remembered entries) is the first."""
    assert dump(document) == dump(document)
