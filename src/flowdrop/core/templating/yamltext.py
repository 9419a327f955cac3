"""A small deterministic YAML emitter for the unified model (``spec.yaml`` / ``model.yaml``).

Block mappings and sequences, numeric lists in flow style, and strings double-quoted whenever a
plain scalar would re-resolve as another type or is not obviously safe (spec §4.1).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from flowdrop.core.hashing import plain_pickle
from flowdrop.core.memo import Memo
from flowdrop.core.numerics import format_shortest

_PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_.@/:-]*$")


def scalar(value: Any) -> str:
    """One YAML scalar."""
    # Exact types first: a spec is hundreds of floats, ids and ints (bool is not int here).
    kind = type(value)
    if kind is str:
        return _string(value) if len(value) <= _MEMO_LENGTH else _quoted(value)
    if kind is float:
        return _float(value)
    if kind is int:
        return str(value)
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _float(value)
    text = str(value)
    return _string(text) if len(text) <= _MEMO_LENGTH else _quoted(text)


_SPECIAL_FLOATS = {"NaN": ".nan", "Infinity": ".inf", "-Infinity": "-.inf"}


def _float(value: float) -> str:
    text = format_shortest(value)
    if "E" in text:
        mantissa, exponent = text.split("E")
        if "." not in mantissa:
            # PyYAML (YAML 1.1) needs a dot in the mantissa to resolve a float.
            return f"{mantissa}.0E{exponent}"
        return text
    return _SPECIAL_FLOATS.get(text, text)


_MEMO_LENGTH = 256


@functools.lru_cache(maxsize=8192)
def _string(text: str) -> str:
    # A model repeats its ids, kinds and expressions request after request; the character
    # checks of a quoted one cost more than the rest of its line.
    return _quoted(text)


def _quoted(text: str) -> str:
    if _stays_a_string(text):
        return text
    quoted = json.dumps(text, ensure_ascii=False)
    if all(_printable(ch) for ch in quoted):
        return quoted
    return "".join(ch if _printable(ch) else _escape(ch) for ch in quoted)


@functools.lru_cache(maxsize=8192)
def _stays_a_string(text: str) -> bool:
    """Whether ``text`` may be written plain: it reads back as the same string.

    Remembered: a model repeats the same ids and kinds many times, and a YAML parse per scalar
    was a fifth of writing a run.
    """
    return bool(_PLAIN.match(text)) and yaml.safe_load(text) == text


def _printable(ch: str) -> bool:
    """YAML's printable set minus line breaks (NEL, LS, PS would fold inside quotes)."""
    code = ord(ch)
    if code in (0x2028, 0x2029):
        return False
    return (
        code in (0x09, 0x0A, 0x0D)
        or 0x20 <= code <= 0x7E
        or 0xA0 <= code <= 0xD7FF
        or 0xE000 <= code <= 0xFFFD
        or 0x10000 <= code <= 0x10FFFF
    )


def _escape(ch: str) -> str:
    code = ord(ch)
    return f"\\u{code:04X}" if code <= 0xFFFF else f"\\U{code:08X}"


def _is_flow_list(value: Sequence[Any]) -> bool:
    """Numbers, short strings and nulls only (no bools): written ``[a, b, c]``."""
    for item in value:
        kind = type(item)
        if kind is float or kind is int or item is None:
            continue
        if isinstance(item, str):
            if len(item) > 40:
                return False
            continue
        if not isinstance(item, int | float) or isinstance(item, bool):
            return False
    return True


_LEAVES = frozenset({str, int, float, bool, type(None)})


def _is_mapping(value: Any) -> bool:
    # The ABC check costs ten times an exact type test, and nearly every value is a dict or
    # a plain leaf.
    kind = type(value)
    return kind is dict or (kind not in _LEAVES and isinstance(value, Mapping))


def _is_sequence(value: Any) -> bool:
    kind = type(value)
    return (
        kind is list or kind is tuple or (kind not in _LEAVES and isinstance(value, list | tuple))
    )


def _emit(value: Any, indent: int, lines: list[str], prefix: str) -> None:
    pad = "  " * indent
    if _is_mapping(value):
        if not value:
            lines.append(f"{prefix}{{}}")
            return
        first = True
        for key, item in value.items():
            lead = prefix if first else pad
            first = False
            key_text = scalar(key if type(key) is str else str(key))
            if _is_mapping(item) and item:
                lines.append(f"{lead}{key_text}:")
                _emit(item, indent + 1, lines, "  " * (indent + 1))
            elif _is_sequence(item) and item and not _is_flow_list(item):
                lines.append(f"{lead}{key_text}:")
                _emit(item, indent, lines, pad)
            else:
                lines.append(f"{lead}{key_text}: {_inline(item)}")
        return
    if _is_sequence(value):
        for item in value:
            if _is_mapping(item) and item:
                _emit(item, indent + 1, lines, f"{pad}- ")
            elif _is_sequence(item) and item and not _is_flow_list(item):
                lines.append(f"{pad}-")
                _emit(item, indent + 1, lines, "  " * (indent + 1))
            else:
                lines.append(f"{pad}- {_inline(item)}")
        return
    lines.append(f"{prefix}{scalar(value)}")


def _inline(value: Any) -> str:
    kind = type(value)
    if kind is float:
        return _float(value)
    if kind in _LEAVES:
        return scalar(value)
    if kind is list:
        return "[" + ", ".join([_inline(v) for v in value]) + "]"
    if _is_mapping(value):
        if not value:
            return "{}"
        return "{" + ", ".join([f"{scalar(str(k))}: {_inline(v)}" for k, v in value.items()]) + "}"
    if _is_sequence(value):
        return "[" + ", ".join([_inline(v) for v in value]) + "]"
    return scalar(value)


def dump(document: Mapping[str, Any]) -> str:
    """Emit ``document`` as block YAML with a trailing newline."""
    if not _is_mapping(document) or not document:
        lines: list[str] = []
        _emit(document, 0, lines, "")
        return "\n".join(lines) + "\n"
    # At the top level each entry's lines depend on that entry alone.
    return "".join([_entry(key, value) for key, value in document.items()])


_entries: Memo[bytes, str] = Memo(entries=512, size=8 * 1024 * 1024)


def _entry(key: Any, value: Any) -> str:
    """The lines of one top-level entry, each ending in a newline.

    Remembered under the entry's plain-data pickle (equal bytes, equal content): a run's spec
    repeats the previous run's nodes, outputs and topology, and only its provenance is new.
    """
    kind = type(value)
    memo_key = plain_pickle((key, value)) if kind is dict or kind is list else None
    if memo_key is not None and (found := _entries.get(memo_key)) is not None:
        return found
    lines: list[str] = []
    _emit({key: value}, 0, lines, "")
    text = "\n".join(lines) + "\n"
    if memo_key is not None:
        _entries.put(memo_key, text, len(memo_key) + len(text))
    return text
