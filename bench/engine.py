"""Engine evaluation cost as the grid grows, against a plain-numpy floor.

Run: ``python bench/engine.py`` (add ``--quick`` for a smoke run). Not part of the test suite.

Models are built directly (bypassing the template layer and its 10000-bin TimeGrid cap) so cells
= bins x nodes can span 1e3..1e7. Each expression node does ``MIN(prev * 0.9 + base, cap) / 2``;
the floor does the same arithmetic with bare numpy calls and no graph. A second table times the
queue recurrence (bin-by-bin by nature) against a bare Python loop doing the same arithmetic.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from flowdrop.core.engine.evaluation import evaluate_graph
from flowdrop.core.engine.graph import build_graph
from flowdrop.core.engine.queues import run_queue
from flowdrop.core.templating.model import Model

SIZES = [(100, 10), (1_000, 10), (1_000, 100), (10_000, 100), (10_000, 1_000)]
QUICK = [(100, 10), (1_000, 10)]


def chain_model(bins: int, nodes: int) -> Model:
    rng = np.random.default_rng(42)
    doc_nodes: list[dict[str, Any]] = [
        {"id": "base", "kind": "const", "values": rng.uniform(0, 100, bins).tolist()},
        {"id": "cap", "kind": "const", "values": rng.uniform(50, 150, bins).tolist()},
        {"id": "n0", "kind": "const", "values": rng.uniform(0, 100, bins).tolist()},
    ]
    for k in range(1, nodes - 2):
        doc_nodes.append(
            {"id": f"n{k}", "kind": "expr", "expr": f"MIN(n{k - 1} * 0.9 + base, cap) / 2"}
        )
    return Model(
        {
            "schemaVersion": 1,
            "grid": {"bins": bins, "binSize": 1, "binUnit": "minutes"},
            "nodes": doc_nodes,
            "outputs": [{"series": "*"}],
        }
    )


def floor(base: np.ndarray, cap: np.ndarray, first: np.ndarray, nodes: int) -> list[np.ndarray]:
    out = [first]
    for _ in range(1, nodes - 2):
        out.append(np.minimum(out[-1] * 0.9 + base, cap) / 2)
    return out


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def queue_floor(inflow: list[float], outflow: list[float]) -> list[float]:
    depth, out = 0.0, []
    for i, o in zip(inflow, outflow, strict=True):
        depth = max(0.0, depth + i - o)
        out.append(depth)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes only")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    sizes = QUICK if args.quick else SIZES

    print(f"Vectorised expression chain (median of {args.repeats})")
    print(
        f"{'bins':>7} {'nodes':>6} {'cells':>9} {'engine ms':>10} {'floor ms':>9} {'ratio':>6} {'build ms':>9}"
    )
    for bins, nodes in sizes:
        model = chain_model(bins, nodes)
        graph = build_graph(model)
        build = median_seconds(lambda m=model: build_graph(m), max(1, args.repeats // 2))
        engine = median_seconds(lambda g=graph: evaluate_graph(g), args.repeats)
        values = {
            n["id"]: np.asarray(n.get("values", []), dtype=np.float64) for n in model.nodes[:3]
        }
        plain = median_seconds(
            lambda v=values, n=nodes: floor(v["base"], v["cap"], v["n0"], n), args.repeats
        )
        check = evaluate_graph(graph)[f"n{nodes - 3}"]
        expected = floor(values["base"], values["cap"], values["n0"], nodes)[-1]
        assert np.array_equal(check, expected), "engine and floor disagree"
        print(
            f"{bins:>7} {nodes:>6} {bins * nodes:>9.0e} {engine * 1e3:>10.2f} {plain * 1e3:>9.2f} "
            f"{engine / plain:>6.2f} {build * 1e3:>9.2f}"
        )

    print(f"\nQueue recurrence, bin by bin (median of {args.repeats})")
    print(f"{'bins':>7} {'engine ms':>10} {'loop ms':>9} {'ratio':>6}")
    for bins in (1_000, 10_000) if not args.quick else (1_000,):
        rng = np.random.default_rng(7)
        inflow, outflow = rng.uniform(0, 10, bins), rng.uniform(0, 10, bins)
        engine = median_seconds(lambda i=inflow, o=outflow: run_queue(0.0, i, o), args.repeats)
        lists = (inflow.tolist(), outflow.tolist())
        plain = median_seconds(lambda ls=lists: queue_floor(*ls), args.repeats)
        print(f"{bins:>7} {engine * 1e3:>10.2f} {plain * 1e3:>9.2f} {engine / plain:>6.2f}")


if __name__ == "__main__":
    main()
