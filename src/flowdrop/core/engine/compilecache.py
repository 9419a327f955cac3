"""Models generated once per (template, mode, effective parameters): a bounded LRU.

Generating a model substitutes the parameters into the template text, parses and validates the
result and emits the unified model — the same work with the same outcome for the same inputs.
The outcome (the model, or the ``FlowdropError`` that rejected the inputs) is remembered per
(template content hash, mode, parameters). The seed is deliberately not part of the key: neither
model generation nor evaluation reads it (only the run writer records it), so requests that
differ only in their seed share one entry.

The cached document is shared and never mutated: a hit returns a :class:`Model` whose document
is a shallow copy with its own ``provenance`` (the only part a run writer changes; the
generation time is the caller's ``now`` as on a miss). Telemetry replay changes nodes through
``Model.copy()`` and ``set_values``, which replace the node list rather than edit it.
"""

from __future__ import annotations

import copy
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from flowdrop.core.errors import FlowdropError
from flowdrop.core.templating.model import Model, generate_model, iso_o
from flowdrop.core.templating.template import Template

DEFAULT_SIZE = 64


@dataclass(frozen=True)
class CacheStats:
    """Counters for metrics: lookups answered from the cache, generations, evictions."""

    hits: int
    misses: int
    evictions: int
    entries: int
    size: int


class CompileCache:
    """A thread-safe LRU of generation outcomes; ``size`` 0 disables it."""

    def __init__(self, size: int = DEFAULT_SIZE) -> None:
        self.size = size
        self._entries: OrderedDict[tuple[str, ...], Model | FlowdropError] = OrderedDict()
        self._guard = threading.Lock()
        self._hits = self._misses = self._evictions = 0

    def resize(self, size: int) -> None:
        with self._guard:
            self.size = size
            self._evict()

    def stats(self) -> CacheStats:
        with self._guard:
            return CacheStats(
                self._hits, self._misses, self._evictions, len(self._entries), self.size
            )

    def model(
        self,
        template: Template,
        parameters: Mapping[str, Any],
        *,
        mode: str = "simulation",
        now: datetime | None = None,
    ) -> Model:
        """``generate_model(template, parameters, mode=mode, now=now)``, remembered."""
        if self.size <= 0:
            return generate_model(template, parameters, mode=mode, now=now)
        key = _key(template, parameters, mode)
        with self._guard:
            outcome = self._entries.get(key)
            if outcome is not None:
                self._entries.move_to_end(key)
                self._hits += 1
            else:
                self._misses += 1
        if outcome is None:
            try:
                outcome = generate_model(template, parameters, mode=mode, now=now)
            except FlowdropError as exc:
                outcome = exc
            with self._guard:
                self._entries[key] = outcome
                self._evict()
            if isinstance(outcome, Model):
                return _private(outcome, now)
        if isinstance(outcome, FlowdropError):
            # A fresh exception each time: one raised object would collect every traceback.
            raise FlowdropError(outcome.code, outcome.message, **outcome.details)
        return _private(outcome, now)

    def clear(self) -> None:
        with self._guard:
            self._entries.clear()

    def _evict(self) -> None:
        while len(self._entries) > max(self.size, 0):
            self._entries.popitem(last=False)
            self._evictions += 1


def _key(template: Template, parameters: Mapping[str, Any], mode: str) -> tuple[str, ...]:
    # repr keeps what substitution can tell apart (1, 1.0 and True; lists and tuples).
    content = hashlib.sha256(template.text.encode("utf-8")).hexdigest()
    ordered = repr(sorted(parameters.items()))
    return (content, template.id, template.version, mode.lower(), ordered)


def _private(model: Model, now: datetime | None) -> Model:
    clone = copy.copy(model)
    clone.document = dict(model.document)
    provenance = dict(model.document.get("provenance") or {})
    if not model.generated_at_pinned:
        provenance["generatedAt"] = iso_o(now or datetime.now(UTC))
    clone.document["provenance"] = provenance
    return clone


_shared = CompileCache()


def shared_cache() -> CompileCache:
    """The process-wide compile cache (one per worker process)."""
    return _shared


def cached_model(
    template: Template,
    parameters: Mapping[str, Any],
    *,
    mode: str = "simulation",
    now: datetime | None = None,
) -> Model:
    """:func:`~flowdrop.core.templating.model.generate_model` through the shared cache."""
    return _shared.model(template, parameters, mode=mode, now=now)
