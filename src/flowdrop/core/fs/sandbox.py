"""The filesystem sandbox: every name a request supplies is checked before any path is built.

Rules (stricter than FlowTime, which has none on main; orchestration ref §8.4):

- capture keys, capture directories and run ids are 1-127 characters of ``[A-Za-z0-9_-]``;
- telemetry binding file names may also contain ``.``, but not ``..``, not a leading ``.``
  (hidden and staging names) and no separator;
- a path built from such names must still lie inside its root after ``realpath`` resolution of
  the components that exist, so a symlink planted under a root cannot lead writes outside it.

Every violation is ``path_violation`` and is raised before anything is created. Messages and
details never contain an absolute host path; :func:`relative_to_root` renders paths for people.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from flowdrop.core.errors import ErrorCode, FlowdropError

MAX_NAME_LENGTH = 127
_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,127}")
_FILE_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,127}")
_ID_RULE = "1-127 characters from A-Z, a-z, 0-9, '_' and '-'"
_FILE_RULE = (
    "1-127 characters from A-Z, a-z, 0-9, '_', '-' and '.', not starting with '.' and without '..'"
)


def _shown(value: str) -> str:
    """A safe rendering of an offending value: never an absolute path, never raw control chars."""
    if "/" in value or "\\" in value:
        return "a path"
    text = value if len(value) <= 40 else value[:40] + "…"
    return repr(text)


def _violation(field: str, value: str, rule: str) -> FlowdropError:
    if not value:
        problem = "is empty"
    elif "/" in value or "\\" in value:
        problem = "contains a path separator"
    elif len(value) > MAX_NAME_LENGTH:
        problem = f"is longer than {MAX_NAME_LENGTH} characters"
    elif value in {".", ".."} or ".." in value:
        problem = f"{_shown(value)} refers to a parent or current directory"
    else:
        problem = f"{_shown(value)} contains characters that are not allowed"
    msg = f"{field} {problem}; use {rule}."
    return FlowdropError(ErrorCode.PATH_VIOLATION, msg, field=field, rule=rule)


def check_id(value: str, field: str) -> str:
    """Validate a capture key, capture directory or run id; return it unchanged."""
    if not isinstance(value, str) or _ID_PATTERN.fullmatch(value) is None:
        raise _violation(field, value if isinstance(value, str) else "", _ID_RULE)
    return value


def check_file_name(value: str, field: str) -> str:
    """Validate a bare file name inside a bundle (telemetry bindings, manifest paths)."""
    if (
        not isinstance(value, str)
        or _FILE_PATTERN.fullmatch(value) is None
        or value.startswith(".")
        or ".." in value
    ):
        raise _violation(field, value if isinstance(value, str) else "", _FILE_RULE)
    return value


def resolve_inside(root: Path, *names: str, field: str = "path") -> Path:
    """``root/names...`` after checking that its existing components stay inside ``root``.

    ``names`` must already have been validated (no separators, no ``..``); what is left to catch
    is a symlink, at any existing component, that resolves outside the root. The root itself may
    be a symlink (it is configuration, not request data).
    """
    real_root = Path(os.path.realpath(root))
    candidate = real_root.joinpath(*names)
    resolved = Path(os.path.realpath(candidate))
    if resolved != real_root and real_root not in resolved.parents:
        msg = f"{field} resolves outside its root (a symlink leads elsewhere)."
        raise FlowdropError(ErrorCode.PATH_VIOLATION, msg, field=field)
    return candidate


def check_root(root: Path, field: str) -> Path:
    """A configured root, made absolute and resolved; it must exist and be a directory."""
    resolved = Path(os.path.realpath(root))
    if not resolved.is_dir():
        msg = f"{field} is not an existing directory."
        raise FlowdropError(ErrorCode.STORAGE_ERROR, msg, field=field)
    return resolved


def relative_to_root(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` with forward slashes (for results and messages)."""
    real_root = Path(os.path.realpath(root))
    try:
        return path.relative_to(real_root).as_posix()
    except ValueError:
        try:
            return path.relative_to(root).as_posix()
        except ValueError:
            return path.name
