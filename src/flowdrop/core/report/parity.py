"""The parity harness FlowTime's plans name and never built: simulate, capture into a bundle,
replay the bundle, and compare every series of the replay with the simulation bin for bin
(totals, per-class series, edges). Everything is written under a caller-given work directory:
the configured runs and telemetry roots are never touched.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flowdrop.core import engine, hashing
from flowdrop.core.engine.artifacts import template_provenance
from flowdrop.core.report.compare import (
    RELATIVE_TOLERANCE,
    SeriesDiff,
    compare_series,
    format_number,
)
from flowdrop.core.telemetry.bundle import (
    BundleInfo,
    ExpectedGrid,
    validate_bundle,
    write_bundle_json,
)
from flowdrop.core.telemetry.capture import capture_run
from flowdrop.core.telemetry.replay import replay_bundle
from flowdrop.core.templating.model import iso_o


@dataclass
class ParityResult:
    template_id: str
    source_dir: Path
    bundle_dir: Path
    replay_dir: Path
    bundle: dict[str, Any]
    captured_files: int
    diffs: list[SeriesDiff]

    @property
    def failures(self) -> list[SeriesDiff]:
        return [d for d in self.diffs if not d.agrees]

    @property
    def ok(self) -> bool:
        return bool(self.diffs) and not self.failures


def run_parity(
    template: engine.Template,
    parameters: Mapping[str, Any],
    work: Path,
    *,
    seed: int | None = None,
    now: datetime | None = None,
) -> ParityResult:
    """Simulate ``template`` into ``work``, capture, replay and compare."""
    moment = now or datetime.now(UTC)
    rng_seed = hashing.DEFAULT_RNG_SEED if seed is None else seed
    source_dir, bundle_dir, replay_dir = work / "simulation", work / "bundle", work / "replay"
    source = engine.simulate(template, parameters, source_dir, rng_seed=rng_seed, now=moment)
    bundle_dir.mkdir(parents=True)
    captured = capture_run(source_dir, bundle_dir, now=moment)
    key = template.capture_key or template.id
    info = BundleInfo(
        created_at_utc=iso_o(moment),
        source_run_id=source.run_id,
        template_id=template.id,
        template_version=template.version,
        capture_key=key,
        parameters_hash=hashing.parameters_hash(
            template.id, template.version, rng_seed, dict(parameters)
        ),
        rng_seed=rng_seed,
        scenario_hash=(captured.manifest or {}).get("provenance", {}).get("scenarioHash"),
    )
    write_bundle_json(bundle_dir, info)
    model = engine.generate_model(template, parameters, mode="telemetry", now=moment)
    grid = model.grid
    manifest = validate_bundle(
        bundle_dir, key, expected=ExpectedGrid(grid.bins, grid.bin_size, grid.bin_unit)
    )
    input_hash = hashing.input_hash(
        template.id, template.version, "telemetry", parameters, {}, hashing.RNG_KIND, rng_seed
    )
    provenance = template_provenance(
        template, parameters, mode="telemetry", input_hash=input_hash, rng_seed=None, now=moment
    )
    replay_bundle(
        model.copy(),  # generated models may be shared with a cache: replay modifies its own
        template,
        parameters,
        manifest,
        replay_dir,
        run_id=f"parity_{template.id}",
        input_hash=input_hash,
        provenance=provenance,
        now=moment,
    )
    expected, actual = engine.read_run(source_dir), engine.read_run(replay_dir)
    order = [str(e.get("id")) for e in actual.entries]
    return ParityResult(
        template_id=template.id,
        source_dir=source_dir,
        bundle_dir=bundle_dir,
        replay_dir=replay_dir,
        bundle=info.to_json(),
        captured_files=len(captured.files),
        diffs=compare_series(expected.series, actual.series, order),
    )


def format_table(result: ParityResult) -> str:
    """The comparison as a fixed-width table, differing series first, then a verdict line."""
    rows = sorted(result.diffs, key=lambda d: (d.agrees, d.series_id))
    width = max([len("series"), *(len(d.series_id) for d in rows)])
    lines = [
        f"{'series':<{width}}  {'kind':<5}  {'bins':>5}  {'max abs diff':>12}  {'max rel diff':>12}"
    ]
    for d in rows:
        flag = "" if d.agrees else "  DIFFERS"
        lines.append(
            f"{d.series_id:<{width}}  {d.kind:<5}  {d.bins:>5}  "
            f"{format_number(d.max_abs):>12}  {format_number(d.max_rel):>12}{flag}"
        )
    failures = result.failures
    if result.ok:
        verdict = (
            f"parity holds: {len(rows)} series of {result.template_id} agree within "
            f"{RELATIVE_TOLERANCE:g} relative ({result.captured_files} captured files)"
        )
    else:
        names = ", ".join(d.series_id for d in failures[:10])
        more = f" and {len(failures) - 10} more" if len(failures) > 10 else ""
        verdict = f"parity FAILS: {len(failures)} of {len(rows)} series differ: {names}{more}"
    return "\n".join([*lines, verdict]) + "\n"
