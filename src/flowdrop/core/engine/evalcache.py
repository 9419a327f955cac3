"""An evaluated model and its warnings, remembered under the exact content they were computed from.

Every fresh replay of an unchanged bundle evaluates the same model with the same captured
values and analyses the same series: about a fifth of the request. Evaluation reads the model's
document (all of it but ``provenance``) and the class seeds, nothing else, so their plain-data
pickle (:func:`~flowdrop.core.hashing.plain_pickle`) is the key: equal bytes are equal content
(floats by their bits, types included), so an edited template or bundle, which changes the
document or the seeds, is a new key. Nothing is invalidated, nothing is trusted; a document
holding anything but plain data is evaluated every time.

An entry's arrays are made read-only, as the compiled literals already are: readers share them,
and a write would raise instead of changing another request's run. Bounded by entries and by bytes
(keys and arrays); per process.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

import numpy as np

from flowdrop.core.engine.evaluation import Evaluation, evaluate
from flowdrop.core.engine.runwarnings import run_warnings
from flowdrop.core.engine.warningtypes import Warning
from flowdrop.core.hashing import plain_pickle
from flowdrop.core.memo import Memo
from flowdrop.core.numerics import FloatArray
from flowdrop.core.templating.model import Model

MAX_ENTRIES = 32
MAX_BYTES = 64 * 1024 * 1024  # keys and arrays of all entries; one over a quarter is not kept
MAX_KEY_BYTES = 4 * 1024 * 1024  # larger models are evaluated every time

_memo: Memo[bytes, tuple[Evaluation, list[Warning]]] = Memo(MAX_ENTRIES, MAX_BYTES)


def evaluated(
    model: Model, *, class_seeds: Mapping[str, Mapping[str, FloatArray]] | None = None
) -> tuple[Evaluation, list[Warning]]:
    """``evaluate(model, class_seeds=class_seeds)`` and its ``run_warnings``, from the memo
    when the same content was evaluated before. The evaluation is shared and read-only; the
    warnings are the caller's own."""
    key = _key(model, class_seeds)
    found = _memo.get(key) if key is not None else None
    if found is not None:
        return found[0], copy.deepcopy(found[1])
    evaluation = evaluate(model, class_seeds=class_seeds)
    warnings = run_warnings(evaluation)
    if key is not None:
        _remember(key, evaluation, warnings)
    return evaluation, warnings


def _remember(key: bytes, evaluation: Evaluation, warnings: list[Warning]) -> None:
    arrays = _arrays(evaluation)
    cost = len(key) + sum(a.nbytes for a in arrays)
    if cost > MAX_BYTES // 4:
        return
    for array in arrays:
        array.flags.writeable = False
    _memo.put(key, (evaluation, copy.deepcopy(warnings)), cost)


def _key(model: Model, seeds: Mapping[str, Mapping[str, FloatArray]] | None) -> bytes | None:
    document = {k: v for k, v in model.document.items() if k != "provenance"}
    plain_seeds: dict[str, dict[str, tuple[str, tuple[int, ...], bytes]]] = {}
    for node, per_class in (seeds or {}).items():
        plain_seeds[node] = {}
        for class_id, values in per_class.items():
            if not isinstance(values, np.ndarray):
                return None  # what evaluate makes of anything else is not this key's business
            plain_seeds[node][class_id] = (values.dtype.str, values.shape, values.tobytes())
    key = plain_pickle((document, plain_seeds))
    return key if key is not None and len(key) <= MAX_KEY_BYTES else None


def _arrays(evaluation: Evaluation) -> list[FloatArray]:
    """Every array an evaluation holds (series, classes, edges, the graph's constants)."""
    arrays: list[FloatArray] = [*evaluation.series.values(), *evaluation.edges.values()]
    for nested in (evaluation.classes, evaluation.edge_classes):
        for per_class in nested.values():
            arrays.extend(per_class.values())
    arrays.extend(edge.values for edge in evaluation.edge_list)
    if evaluation.graph is not None:
        arrays.extend(n.values for n in evaluation.graph.nodes.values() if n.values is not None)
    return [a for a in arrays if isinstance(a, np.ndarray)]


def forget_all() -> None:
    """Evaluate everything again (tests)."""
    _memo.clear()
