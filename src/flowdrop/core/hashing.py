"""Hashes, run ids and the .NET System.Text.Json encoding they are computed over.

FlowTime hashes compact JSON written by System.Text.Json with its default encoder, which escapes
every non-ASCII character and the HTML-sensitive ones (``<>&'+`"``) as ``\\uXXXX``. Reproducing
that byte-for-byte is what makes ``inputHash`` (and so deterministic run ids) match upstream.
"""

from __future__ import annotations

import functools
import hashlib
import io
import math
import pickle
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from flowdrop.core.memo import Memo
from flowdrop.core.numerics import format_shortest

_SHORT_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f"}
_ESCAPED_ASCII = set("<>&'+`\"")

# FlowTime's only RNG and the seed a run records when the request pins none (§11.3).
RNG_KIND = "pcg32"
DEFAULT_RNG_SEED = 123


# Printable ASCII except what System.Text.Json escapes by default; most strings are all plain.
_NEEDS_ESCAPE = re.compile(r"[^\x20-\x7e]|[<>&'+`\"\\]")


def _escape_string(text: str) -> str:
    if _NEEDS_ESCAPE.search(text) is None:
        return f'"{text}"'
    out: list[str] = ['"']
    for ch in text:
        code = ord(ch)
        if ch in _SHORT_ESCAPES:
            out.append(_SHORT_ESCAPES[ch])
        elif code < 0x20 or code > 0x7E or ch in _ESCAPED_ASCII:
            if code > 0xFFFF:
                code -= 0x10000
                out.append(f"\\u{0xD800 + (code >> 10):04X}\\u{0xDC00 + (code & 0x3FF):04X}")
            else:
                out.append(f"\\u{code:04X}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _number(value: float) -> str:
    if math.isnan(value) or math.isinf(value):
        raise ValueError(f"JSON cannot represent {value!r}")
    return format_shortest(value)


def dotnet_json(value: Any, *, indent: bool = False) -> str:
    """Serialise like System.Text.Json's defaults (compact, or 2-space indented when asked).

    Mappings keep their insertion order (callers sort when the format demands it); integral
    doubles are written without a fraction (``5.0`` -> ``5``), others in shortest round-trip form.
    """
    if indent and type(value) is dict and value:
        # At the top level each member's text depends on that member alone (see _top_member).
        return "{\n" + ",\n".join([_top_member(k, v) for k, v in value.items()]) + "\n}"
    return _encode(value, 0 if indent else None)


_members: Memo[bytes, str] = Memo(entries=1024, size=8 * 1024 * 1024)


def _top_member(key: Any, value: Any) -> str:
    """One member of an indented document's top-level object, remembered under its plain-data
    pickle (equal bytes, equal content): a run's series index, class list and copied bundle
    manifest are the previous run's, only ids, hashes and times are new."""
    kind = type(value)
    if (kind is not dict and kind is not list) or len(value) < 2:
        return _member(key, 1) + _encode(value, 1)  # cheaper than its key
    memo_key = plain_pickle((key, value))
    if memo_key is not None and (found := _members.get(memo_key)) is not None:
        return found
    text = _member(key, 1) + _encode(value, 1)
    if memo_key is not None:
        _members.put(memo_key, text, len(memo_key) + len(text))
    return text


def _encode(value: Any, level: int | None) -> str:
    # A run's JSON documents are thousands of small dicts, lists, strings and ints: those exact
    # types go first, and strings and member prefixes ("  " * level + key + ": ") are memoised.
    kind = type(value)
    if kind is str:
        return _plain(value) if len(value) <= _MEMO_LENGTH else _escape_string(value)
    if kind is dict:
        if not value:
            return "{}"
        if level is None:
            return "{" + ",".join([f"{_key(k)}:{_encode(v, None)}" for k, v in value.items()]) + "}"
        inner = level + 1
        body = ",\n".join([_member(k, inner) + _encode(v, inner) for k, v in value.items()])
        return "{\n" + body + "\n" + "  " * level + "}"
    if kind is list:
        if not value:
            return "[]"
        if level is None:
            return "[" + ",".join([_encode(v, None) for v in value]) + "]"
        pad = "  " * (level + 1)
        body = ",\n".join([pad + _encode(v, level + 1) for v in value])
        return "[\n" + body + "\n" + "  " * level + "]"
    if kind is int:
        return str(value)
    return _encode_other(value, level)


_MEMO_LENGTH = 256


@functools.lru_cache(maxsize=4096)
def _plain(text: str) -> str:
    return _escape_string(text)


def _key(key: Any) -> str:
    text = key if type(key) is str else str(key)
    return _plain(text) if len(text) <= _MEMO_LENGTH else _escape_string(text)


def _member(key: Any, level: int) -> str:
    if type(key) is str and len(key) <= _MEMO_LENGTH:
        return _member_text(key, level)
    return "  " * level + _key(key) + ": "


@functools.lru_cache(maxsize=4096)
def _member_text(key: str, level: int) -> str:
    return "  " * level + _plain(key) + ": "


def _encode_other(value: Any, level: int | None) -> str:
    """Everything but exact str, dict, list and int (their subclasses included)."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _number(value)
    if isinstance(value, str):
        return _escape_string(value)
    if isinstance(value, Mapping):
        items = [(_escape_string(str(k)), v) for k, v in value.items()]
        if not items:
            return "{}"
        if level is None:
            return "{" + ",".join(f"{k}:{_encode(v, None)}" for k, v in items) + "}"
        pad = "  " * (level + 1)
        body = ",\n".join(f"{pad}{k}: {_encode(v, level + 1)}" for k, v in items)
        return "{\n" + body + "\n" + "  " * level + "}"
    if isinstance(value, Sequence) or hasattr(value, "tolist"):
        seq = value.tolist() if hasattr(value, "tolist") else list(value)
        if not seq:
            return "[]"
        if level is None:
            return "[" + ",".join(_encode(v, None) for v in seq) + "]"
        pad = "  " * (level + 1)
        body = ",\n".join(f"{pad}{_encode(v, level + 1)}" for v in seq)
        return "[\n" + body + "\n" + "  " * level + "]"
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def _sorted_deep(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _sorted_deep(value[k]) for k in sorted(value, key=_ordinal_key)}
    if isinstance(value, list | tuple):
        return [_sorted_deep(v) for v in value]
    return value


def _ordinal_key(key: Any) -> list[int]:
    # .NET ordinal comparison orders by UTF-16 code units, not by code points.
    encoded = str(key).encode("utf-16-be")
    return [int.from_bytes(encoded[i : i + 2], "big") for i in range(0, len(encoded), 2)]


def sha256_text(text: str) -> str:
    """``sha256:<hex>`` of the UTF-8 bytes of ``text``."""
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def sha256_bytes(data: bytes) -> str:
    """``sha256:<hex>`` of raw bytes."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    """``sha256:<hex>`` of a file's bytes (including any BOM)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 16), b""):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def input_hash(
    template_id: str,
    template_version: str,
    mode: str,
    parameters: Mapping[str, Any],
    telemetry_bindings: Mapping[str, str] | None,
    rng_kind: str,
    rng_seed: int,
) -> str:
    """FlowTime's ``RunHashCalculator``: hash of the request identity (not of the outputs).

    ``parameters`` are the parameters explicitly present in the request (nulls dropped, defaults
    not merged).
    """
    document = {
        "templateId": template_id,
        "templateVersion": template_version,
        "mode": mode.lower(),
        "parameters": _sorted_deep({k: v for k, v in parameters.items() if v is not None}),
        "telemetryBindings": _sorted_deep(dict(telemetry_bindings or {})),
        "rng": {"kind": rng_kind, "seed": rng_seed},
    }
    return sha256_text(dotnet_json(document))


def scenario_hash(spec_text: str, seed: int | None, start_time_bias: str | None = None) -> str:
    """``sha256(spec.strip() + "\\n" + seed|null + "\\n" + bias|null)``."""
    seed_text = "null" if seed is None else str(seed)
    bias_text = "null" if start_time_bias is None else start_time_bias
    return sha256_text(f"{spec_text.strip()}\n{seed_text}\n{bias_text}")


_INVALID_FILENAME = re.compile(r"[\s/\x00]")


def sanitize_template_id(template_id: str) -> str:
    """``DeterministicRunNaming`` sanitisation of a template id (Linux file-name rules)."""
    text = _INVALID_FILENAME.sub("-", template_id.lower()).strip("-")
    while "--" in text:
        text = text.replace("--", "-")
    return text or "template"


def deterministic_run_id(template_id: str, input_hash_value: str) -> str:
    """``run_<sanitised template id>_<64 hex of the input hash>``."""
    hex_part = input_hash_value.removeprefix("sha256:")
    return f"run_{sanitize_template_id(template_id)}_{hex_part}"


def parameters_hash(
    template_id: str, template_version: str, rng_seed: int | None, parameters: Mapping[str, Any]
) -> str:
    """Telemetry capture ``parametersHash`` over templateId, version, seed and sorted parameters."""
    document = {
        "templateId": template_id,
        "templateVersion": template_version,
        "rngSeed": rng_seed,
        "parameters": _sorted_deep(dict(parameters)),
    }
    return sha256_text(dotnet_json(document))


class _NotPlain(Exception):
    pass


class _PlainPickler(pickle.Pickler):
    # Called only for what the pickler has no built-in rule for: anything but None, bools,
    # ints, floats, str, bytes and exact lists, tuples, dicts, sets (subclasses included).
    def reducer_override(self, obj: Any) -> Any:
        raise _NotPlain


def plain_pickle(value: Any) -> bytes | None:
    """The pickle of ``value`` when it is plain data (None, bool, int, float, str, bytes and
    exact lists, tuples, dicts and sets of them), else ``None``.

    Equal bytes are equal content, types included and floats by their bits (so -0.0 is not 0.0):
    a memo key for anything computed from such data alone.
    """
    buffer = io.BytesIO()
    try:
        _PlainPickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(value)
    except (_NotPlain, pickle.PicklingError, RecursionError):
        return None
    return buffer.getvalue()
