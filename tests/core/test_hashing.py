"""dotnet_json, input hash, scenario hash and deterministic run ids (§11.5, orchestration §2.6)."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowdrop.core.hashing import (
    deterministic_run_id,
    dotnet_json,
    input_hash,
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
