"""dotnet_json, input hash, scenario hash and deterministic run ids (§11.5, orchestration §2.6)."""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowdrop.core.hashing import (
    deterministic_run_id,
    dotnet_json,
    input_hash,
    plain_pickle,
    sanitize_template_id,
    scenario_hash,
    sha256_file,
)


def test_input_hash_matches_derived_vector() -> None:
    """transportation-basic 3.0.1, simulation, no parameters, seed 123 (§11.5)."""
    value = input_hash("transportation-basic", "3.0.1", "simulation", {}, {}, "pcg32", 123)
    assert value == "sha256:914bf06b22a4048a5174512a11b429c66c296e379c917d537349ea25f039364b"


def test_scenario_hash_matches_derived_vector() -> None:
    """sha256 of the trimmed spec, the seed and a null bias (§11.5)."""
    assert scenario_hash("schemaVersion: 1\n", 123) == (
        "sha256:775be85f61d518ee00233bf29ffc10b06d20b940b23752553fd70603a2e2a9a6"
    )


def test_input_hash_sorts_parameters_and_drops_nulls() -> None:
    """Key order and null parameters do not change the hash; values do."""
    a = input_hash("t", "1.0.0", "Simulation", {"b": 1, "a": 2.0, "c": None}, {}, "pcg32", 1)
    b = input_hash("t", "1.0.0", "simulation", {"a": 2, "b": 1}, None, "pcg32", 1)
    c = input_hash("t", "1.0.0", "simulation", {"a": 3, "b": 1}, None, "pcg32", 1)
    assert a == b != c


def test_dotnet_json_escapes_like_system_text_json() -> None:
    """Non-ASCII and HTML-sensitive characters become uppercase \\uXXXX escapes."""
    text = dotnet_json({"m": 'it\'s <a> & b+c → "q" \\ \n 😀', "n": [1, 2.0, 0.2, 1e20]})
    assert text == (
        '{"m":"it\\u0027s \\u003Ca\\u003E \\u0026 b\\u002Bc \\u2192 \\u0022q\\u0022 \\\\ \\n '
        '\\uD83D\\uDE00","n":[1,2,0.2,1E+20]}'
    )


def test_dotnet_json_indented_layout() -> None:
    """Indented output uses two spaces and ``key: value``; empty containers stay inline."""
    assert dotnet_json({"a": [1], "b": {}, "c": None}, indent=True) == (
        '{\n  "a": [\n    1\n  ],\n  "b": {},\n  "c": null\n}'
    )


def test_dotnet_json_rejects_nan() -> None:
    """JSON cannot carry NaN; System.Text.Json throws, so do we."""
    with pytest.raises(ValueError, match="cannot represent"):
        dotnet_json(float("nan"))


@pytest.mark.parametrize(
    ("template_id", "expected"),
    [("Sim Order", "sim-order"), ("--a//b--", "a-b"), ("", "template"), ("x.y", "x.y")],
)
def test_sanitize_template_id(template_id: str, expected: str) -> None:
    """Lower-case, invalid characters to '-', trimmed, '--' collapsed, empty -> template."""
    assert sanitize_template_id(template_id) == expected


def test_deterministic_run_id_uses_full_hex() -> None:
    """run_<sanitised id>_<64 hex>."""
    value = input_hash("sim-order", "1.0.0", "simulation", {}, {}, "pcg32", 123)
    run_id = deterministic_run_id("sim-order", value)
    assert run_id == "run_sim-order_" + value.removeprefix("sha256:")
    assert len(run_id) == len("run_sim-order_") + 64


def test_sha256_file_includes_every_byte(tmp_path: Path) -> None:
    """The BOM is part of the hashed bytes."""
    path = tmp_path / "f.csv"
    path.write_bytes(b"\xef\xbb\xbfabc")
    assert sha256_file(path) == (
        "sha256:" + __import__("hashlib").sha256(b"\xef\xbb\xbfabc").hexdigest()
    )


def _reference_encode(value: Any, level: int | None) -> str:
    """The one-isinstance-chain encoder the typed fast path replaced (same output, slower)."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return dotnet_json(value)
    if isinstance(value, str):
        return dotnet_json(value)
    if isinstance(value, Mapping):
        items = [(dotnet_json(str(k)), v) for k, v in value.items()]
        if not items:
            return "{}"
        if level is None:
            return "{" + ",".join(f"{k}:{_reference_encode(v, None)}" for k, v in items) + "}"
        pad = "  " * (level + 1)
        body = ",\n".join(f"{pad}{k}: {_reference_encode(v, level + 1)}" for k, v in items)
        return "{\n" + body + "\n" + "  " * level + "}"
    seq = value.tolist() if hasattr(value, "tolist") else list(value)
    if not seq:
        return "[]"
    if level is None:
        return "[" + ",".join(_reference_encode(v, None) for v in seq) + "]"
    pad = "  " * (level + 1)
    body = ",\n".join(f"{pad}{_reference_encode(v, level + 1)}" for v in seq)
    return "[\n" + body + "\n" + "  " * level + "]"


_TEXT = st.text(max_size=8) | st.sampled_from(["id", "a<b", 'q"', "é", "\n", "😀", "x" * 300])
_LEAVES = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | _TEXT
)
_KEYS = _TEXT | st.integers(-2, 2) | st.booleans()
_JSON = st.recursive(
    _LEAVES,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.lists(inner, max_size=4).map(tuple)
        | st.dictionaries(_KEYS, inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(_JSON, st.booleans())
def test_dotnet_json_matches_the_reference_encoder(value: Any, indent: bool) -> None:
    """Memoised strings and member prefixes and the exact-type dispatch change no character
    (keys 1 and True, strings past the memo length, tuples and non-ASCII included)."""
    assert dotnet_json(value, indent=indent) == _reference_encode(value, 0 if indent else None)


def test_plain_pickle_keys_plain_data_by_exact_content() -> None:
    """Equal bytes only for equal content: types and float bits count; anything else is None."""
    plain = {"a": [1.0, -0.0, None, True, "x"], "b": (1, b"y"), 2: {3}}
    assert plain_pickle(plain) == plain_pickle(dict(plain))
    assert plain_pickle([0.0]) != plain_pickle([-0.0])
    assert plain_pickle([1]) != plain_pickle([1.0]) != plain_pickle([True])
    assert plain_pickle([1, 2]) != plain_pickle((1, 2))

    class Text(str):
        pass

    for odd in (OrderedDict(a=1), [Text("x")], {"f": len}, [object()]):
        assert plain_pickle(odd) is None


def test_indented_documents_remembered_by_member_are_exact() -> None:
    """Top-level members are remembered by content: a sign of zero or a type is not lost, and a
    value JSON cannot hold is refused every time."""
    for _ in range(2):
        assert dotnet_json({"a": [0.0, 1.5], "b": 1}, indent=True) == (
            '{\n  "a": [\n    0,\n    1.5\n  ],\n  "b": 1\n}'
        )
        assert dotnet_json({"a": [-0.0, 1.5], "b": 1}, indent=True) == (
            '{\n  "a": [\n    -0,\n    1.5\n  ],\n  "b": 1\n}'
        )
        assert dotnet_json({"a": [True, 1], "b": 1}, indent=True).count("true") == 1
        with pytest.raises(ValueError):
            dotnet_json({"a": [math.nan, 1.0]}, indent=True)
