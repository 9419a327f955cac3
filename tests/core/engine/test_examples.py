"""The bundled demo templates validate, simulate and have the advertised character."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowdrop.core.engine import (
    evaluate,
    generate_model,
    load_template,
    simulate,
    validate_template,
)

EXAMPLES = sorted(
    (Path(__file__).resolve().parents[3] / "src/flowdrop/examples/templates").glob("*.yaml")
)


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_simulates_without_warnings(path: Path, tmp_path: Path) -> None:
    """Each demo template writes a clean run: no warning-severity warnings (upstream's
    prerequisite infos, e.g. a service without a capacity series, are allowed)."""
    template = load_template(path)
    validate_template(template)
    info = simulate(template, {}, tmp_path / "run", rng_seed=1)
    assert [w for w in info.warnings if w["severity"] != "info"] == []


def test_examples_cover_the_demo_cases() -> None:
    """One deterministic with captureKey, one stochastic with captureKey, one without captureKey."""
    templates = {t.id: t for t in map(load_template, EXAMPLES)}
    assert templates["demo-orders"].capture_key == "demo-orders"
    assert templates["demo-orders"].stochastic_reasons == []
    assert templates["demo-stochastic"].capture_key == "demo-stochastic"
    assert templates["demo-stochastic"].stochastic_reasons == ["rng block", "pmf node 'calls'"]
    assert templates["demo-plain"].capture_key is None


def test_demo_orders_backlog_feedback_conserves_work() -> None:
    """handled = MIN(new + last backlog, capacity), so the backlog never hides served > available."""
    evaluation = evaluate(
        generate_model(load_template(next(p for p in EXAMPLES if p.stem == "demo-orders")), {})
    )
    assert evaluation["handled_orders"].tolist()[:3] == [19, 38.25, 40]
    assert evaluation["order_desk_queue"].tolist()[:3] == [5, 0, 7.5]
