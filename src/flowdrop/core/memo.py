"""Bounded memos: values remembered under a key, the least recently used leaving first.

The fast path's caches (templates' YAML entries, JSON members, series CSV bytes, bundle files
and documents, verified bundle facts, evaluations) each keep what was computed under a content
or file-identity key. A :class:`Memo` bounds them all the same way: a number of entries and,
where values are large, a total cost (bytes) the caller states for each value.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Memo(Generic[K, V]):
    """At most ``entries`` values and, with ``size``, a total cost of at most ``size``; safe to
    share between threads. ``None`` is not a value (it means "not remembered")."""

    def __init__(self, entries: int, size: int | None = None) -> None:
        self._entries, self._size = entries, size
        self._values: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self._used = 0
        self._guard = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._guard:
            found = self._values.get(key)
            if found is None:
                return None
            self._values.move_to_end(key)
            return found[0]

    def put(self, key: K, value: V, cost: int = 0) -> None:
        """Remember ``value`` unless ``key`` is remembered already or ``cost`` alone is over
        the size; then forget the least recently used until both bounds hold."""
        if self._size is not None and cost > self._size:
            return
        with self._guard:
            if key in self._values:
                return
            self._values[key] = (value, cost)
            self._used += cost
            while len(self._values) > self._entries or (
                self._size is not None and self._used > self._size
            ):
                self._used -= self._values.popitem(last=False)[1][1]

    def clear(self) -> None:
        with self._guard:
            self._values.clear()
            self._used = 0
