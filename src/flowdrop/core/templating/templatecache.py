"""Templates parsed once per file: remembered by file identity, then by content hash.

A daemon loads the same few template files for every request. A file whose identity (device,
inode, size, mtime, ctime) is unchanged is not read again; a file that changed is read and, when
its bytes hash to a template already parsed (a touched or copied file), not parsed again. An
edited file has a new identity, so the next request sees the edit. Errors are never cached: a
missing or broken file is reported by :func:`~flowdrop.core.templating.template.load_template`
with its usual wording, every time.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import TypeVar

from flowdrop.core.templating import template as templates
from flowdrop.core.templating.template import Template, parse_template

DEFAULT_SIZE = 128
Identity = tuple[int, int, int, int, int]
_K = TypeVar("_K")


def file_identity(path: Path) -> Identity:
    """What changes whenever the file's bytes may have: device, inode, size, mtime, ctime."""
    info = os.stat(path)
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)


class TemplateCache:
    """A bounded LRU of parsed templates keyed by file identity and by content hash."""

    def __init__(self, size: int = DEFAULT_SIZE) -> None:
        self.size = size
        self.hits = 0
        self.misses = 0
        self._by_identity: OrderedDict[tuple[str, Identity], Template] = OrderedDict()
        self._by_content: OrderedDict[str, Template] = OrderedDict()
        self._guard = threading.Lock()

    def load(self, path: Path) -> Template:
        """The template in ``path`` (see :func:`~flowdrop.core.templating.template.load_template`)."""
        try:
            identity = (str(path), file_identity(path))
        except OSError:
            return templates.load_template(path)  # words the error
        with self._guard:
            cached = self._by_identity.get(identity)
            if cached is not None:
                self._by_identity.move_to_end(identity)
                self.hits += 1
                return cached
        try:
            data = path.read_bytes()
            text = data.decode("utf-8-sig")
        except (OSError, UnicodeDecodeError):
            return templates.load_template(path)
        digest = hashlib.sha256(data).hexdigest()
        with self._guard:
            parsed = self._by_content.get(digest)
        if parsed is None:
            self.misses += 1
            parsed = parse_template(text, source_name=path.name)
        else:
            self.hits += 1
            if parsed.source_name != path.name:
                parsed = dataclasses.replace(parsed, source_name=path.name)
        with self._guard:
            self._remember(self._by_content, digest, parsed)
            self._remember(self._by_identity, identity, parsed)
        return parsed

    def _remember(self, table: OrderedDict[_K, Template], key: _K, value: Template) -> None:
        table[key] = value
        table.move_to_end(key)
        while len(table) > self.size:
            table.popitem(last=False)

    def clear(self) -> None:
        with self._guard:
            self._by_identity.clear()
            self._by_content.clear()


_shared = TemplateCache()


def shared_cache() -> TemplateCache:
    """The process-wide template cache (one per worker process)."""
    return _shared


def load_template(source: Path | str) -> Template:
    """:func:`~flowdrop.core.templating.template.load_template` through the shared cache."""
    if isinstance(source, str):
        return parse_template(source)
    return _shared.load(source)
