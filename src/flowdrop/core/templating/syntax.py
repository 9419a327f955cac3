"""The ``expr`` language's syntax: AST, recursive-descent parser and dependency analysis (§9.3).

Grammar (no unary minus, no exponents, no comparisons)::

    Expression := Term (('+'|'-') Term)*      Term := Factor (('*'|'/') Factor)*
    Factor     := '(' Expression ')' | '[' Number, ... ']' | Number | Identifier | Name '(' args ')'
"""

from __future__ import annotations

import functools
from dataclasses import dataclass


class ExpressionError(Exception):
    """A parse or evaluation error; the message is FlowTime's."""


@dataclass(frozen=True)
class Num:
    value: float


@dataclass(frozen=True)
class Ref:
    name: str


@dataclass(frozen=True)
class Arr:
    values: tuple[float, ...]


@dataclass(frozen=True)
class BinOp:
    op: str
    left: Expr
    right: Expr


@dataclass(frozen=True)
class Call:
    name: str
    args: tuple[Expr, ...]


Expr = Num | Ref | Arr | BinOp | Call


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def error(self, message: str, pos: int | None = None) -> ExpressionError:
        return ExpressionError(
            f"Parse error at position {self.pos if pos is None else pos}: {message}"
        )

    def skip(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def peek(self) -> str:
        self.skip()
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def parse(self) -> Expr:
        expr = self.expression()
        if self.peek():
            raise self.error(f"Unexpected character '{self.text[self.pos]}'")
        return expr

    def expression(self) -> Expr:
        left = self.term()
        while self.peek() in ("+", "-") and self.peek():
            op = self.text[self.pos]
            self.pos += 1
            left = BinOp(op, left, self.term())
        return left

    def term(self) -> Expr:
        left = self.factor()
        while self.peek() in ("*", "/") and self.peek():
            op = self.text[self.pos]
            self.pos += 1
            left = BinOp(op, left, self.factor())
        return left

    def factor(self) -> Expr:
        ch = self.peek()
        if ch == "(":
            self.pos += 1
            inner = self.expression()
            if self.peek() != ")":
                raise self.error("Expected ')'")
            self.pos += 1
            return inner
        if ch == "[":
            return self.array()
        if ch.isdigit():
            return Num(self.number())
        if ch.isalpha() or ch == "_":
            return self.identifier_or_call()
        if not ch:
            raise self.error("Unexpected end of expression")
        raise self.error(f"Unexpected character '{ch}'")

    def number(self) -> float:
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos].isdigit():
            self.pos += 1
        if self.pos < len(self.text) and self.text[self.pos] == ".":
            self.pos += 1
            if self.pos >= len(self.text) or not self.text[self.pos].isdigit():
                raise self.error("Expected digit after decimal point")
            while self.pos < len(self.text) and self.text[self.pos].isdigit():
                self.pos += 1
        literal = self.text[start : self.pos]
        try:
            return float(literal)
        except ValueError:
            raise self.error(f"Invalid number format: {literal}", start) from None

    def array(self) -> Arr:
        self.pos += 1
        values: list[float] = []
        if self.peek() == "]":
            self.pos += 1
            return Arr(())
        while True:
            if not self.peek().isdigit():
                raise self.error("Expected ',' or ']'")
            values.append(self.number())
            ch = self.peek()
            if ch == ",":
                self.pos += 1
            elif ch == "]":
                self.pos += 1
                return Arr(tuple(values))
            else:
                raise self.error("Expected ',' or ']'")

    def identifier_or_call(self) -> Expr:
        start = self.pos
        while self.pos < len(self.text) and (
            self.text[self.pos].isalnum() or self.text[self.pos] == "_"
        ):
            self.pos += 1
        name = self.text[start : self.pos]
        if self.peek() != "(":
            return Ref(name)
        self.pos += 1
        args: list[Expr] = []
        if self.peek() == ")":
            self.pos += 1
            return Call(name, ())
        while True:
            args.append(self.expression())
            ch = self.peek()
            if ch == ",":
                self.pos += 1
                if self.peek() == ")":
                    raise self.error("Unexpected ',' before ')'")
            elif ch == ")":
                self.pos += 1
                return Call(name, tuple(args))
            else:
                raise self.error("Expected ',' or ')'")


def parse(text: str) -> Expr:
    """Parse an expression; raises :class:`ExpressionError` with FlowTime's message."""
    if len(text) > _MEMO_LENGTH:
        return _Parser(text).parse()
    return _parsed(text)


# Every request re-validates and re-compiles its model, and a template's ~300 expressions
# are the same text each time; the AST is frozen, so one parse per text is shared (errors
# are not memoised: they are raised again, fresh, by the parser).
_MEMO_LENGTH = 2000


@functools.lru_cache(maxsize=4096)
def _parsed(text: str) -> Expr:
    return _Parser(text).parse()


def _literal_int(expr: Expr) -> int | None:
    if isinstance(expr, Num) and expr.value.is_integer():
        return int(expr.value)
    return None


def references(expr: Expr) -> tuple[list[str], set[str]]:
    """(all identifiers in first-seen order, identifiers read only through SHIFT with lag >= 1)."""
    same: list[str] = []
    lagged: list[str] = []

    def walk(node: Expr, in_lag: bool) -> None:
        if isinstance(node, Ref):
            (lagged if in_lag else same).append(node.name)
        elif isinstance(node, BinOp):
            walk(node.left, in_lag)
            walk(node.right, in_lag)
        elif isinstance(node, Call):
            lag = _literal_int(node.args[1]) if len(node.args) == 2 else None
            if node.name.upper() == "SHIFT" and lag is not None and lag >= 1:
                walk(node.args[0], True)
                for arg in node.args[1:]:
                    walk(arg, in_lag)
            else:
                for arg in node.args:
                    walk(arg, in_lag)

    walk(expr, False)
    ordered = list(dict.fromkeys(same + lagged))
    return ordered, set(lagged) - set(same)


def same_bin_inputs(expr: Expr) -> list[str]:
    """Identifiers that must be evaluated before this expression (in first-seen order)."""
    ordered, lagged = references(expr)
    return [name for name in ordered if name not in lagged]
