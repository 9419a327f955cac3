"""Expression syntax: grammar errors with positions, lagged vs same-bin references (§9.3)."""

from __future__ import annotations

import pytest

from flowdrop.core.templating.syntax import (
    BinOp,
    Call,
    ExpressionError,
    Num,
    Ref,
    parse,
    references,
    same_bin_inputs,
)


def test_precedence_and_associativity() -> None:
    """* binds tighter than +; operators are left-associative; names keep their case."""
    assert parse("a - b - 2 * c") == BinOp(
        "-", BinOp("-", Ref("a"), Ref("b")), BinOp("*", Num(2.0), Ref("c"))
    )
    assert parse("min(x, [1, 2.5])") == Call("min", (Ref("x"), parse("[1, 2.5]")))


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("-5", "Parse error at position 0: Unexpected character '-'"),
        ("(a", "Parse error at position 2: Expected ')'"),
        ("1.", "Parse error at position 2: Expected digit after decimal point"),
        ("MIN(a,)", "Parse error at position 6: Unexpected ',' before ')'"),
        ("MIN(a b)", "Parse error at position 6: Expected ',' or ')'"),
        ("CONV(a, [1, x])", "Parse error at position 12: Expected ',' or ']'"),
        ("a ^ 2", "Parse error at position 2: Unexpected character '^'"),
        ("1e5", "Parse error at position 1: Unexpected character 'e'"),
    ],
)
def test_parse_errors(expr: str, message: str) -> None:
    """No unary minus, no exponents, positions reported (§9.3)."""
    with pytest.raises(ExpressionError) as caught:
        parse(expr)
    assert str(caught.value) == message


def test_shift_references_are_lagged_unless_also_same_bin() -> None:
    """Identifiers only inside SHIFT(x, L>=1) are not same-bin inputs."""
    ordered, lagged = references(parse("SHIFT(x, 1) + y + SHIFT(y, 2) + SHIFT(z, 0)"))
    assert set(ordered) == {"x", "y", "z"} and lagged == {"x"}
    assert same_bin_inputs(parse("SHIFT(x, 1) + y")) == ["y"]


def test_an_expression_text_is_parsed_once_and_errors_every_time() -> None:
    """The memoised parse shares one frozen AST per text; an error is raised again (not
    remembered), with the same message; long texts are parsed afresh each time."""
    text = "MIN(a * 0.5 + SHIFT(b, 1), [1, 2])"
    assert parse(text) is parse(text)
    assert parse(text) == Call(
        "MIN",
        (
            BinOp("+", BinOp("*", Ref("a"), Num(0.5)), Call("SHIFT", (Ref("b"), Num(1.0)))),
            parse("[1, 2]"),
        ),
    )
    long_text = "[" + ", ".join(["1.5"] * 600) + "]"
    first, second = parse(long_text), parse(long_text)
    assert first == second and first is not second
    messages = []
    for _ in range(2):
        with pytest.raises(ExpressionError) as caught:
            parse("a +")
        messages.append(str(caught.value))
    assert messages[0] == messages[1]
