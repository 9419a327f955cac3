"""The auto-capture state machine (the milestone's RunOrchestrationServiceAutoCaptureTests).

Small templates written into ``tmp_path`` keep these fast; tests/e2e runs the real ones.
"""

from __future__ import annotations

import json
import os
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from flowdrop.core.contract import CaptureStatus, Phase, RunRequest, State
from flowdrop.core.errors import ErrorCode
from flowdrop.core.fs.locking import capture_lock
from flowdrop.core.hashing import deterministic_run_id, input_hash, parameters_hash
from flowdrop.core.orchestration.orchestrator import Roots, orchestrate
from tests.failpointing import armed

FIXED = datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)

MINI = """\
schemaVersion: 1
generator: flowtime-sim
metadata:
  id: mini-loop
  title: Mini Loop
  version: 1.0.0
  captureKey: mini-bundle
classes:
  - id: Retail
  - id: Wholesale
window:
  start: 2025-01-01T00:00:00Z
  timezone: UTC
grid:
  bins: ${bins}
  binSize: 5
  binUnit: minutes
traffic:
  arrivals:
    - nodeId: retail_demand
      classId: Retail
      pattern: {kind: constant, ratePerBin: 1}
    - nodeId: wholesale_demand
      classId: Wholesale
      pattern: {kind: constant, ratePerBin: 1}
parameters:
  - name: bins
    type: integer
    default: 4
  - name: retailBase
    type: number
    default: 10
  - name: telemetryRetailSource
    type: string
    default: ""
topology:
  nodes:
    - id: OrderService
      kind: service
      semantics:
        arrivals: total_arrivals
        served: total_served
        errors: total_errors
  edges: []
nodes:
  - id: retail_demand
    kind: expr
    expr: "${retailBase} + 0"
  - id: wholesale_demand
    kind: expr
    expr: "3.5 + 0"
  - id: total_arrivals
    kind: expr
    expr: "retail_demand + wholesale_demand"
  - id: total_served
    kind: expr
    expr: "total_arrivals * 0.9"
  - id: total_errors
    kind: expr
    expr: "total_arrivals - total_served"
outputs:
  - series: total_arrivals
    as: total_arrivals.csv
  - series: total_served
    as: total_served.csv
  - series: total_errors
    as: total_errors.csv
"""


def _variant(template_id: str, *, key: str | None, extra: str = "") -> str:
    text = MINI.replace("id: mini-loop", f"id: {template_id}")
    text = text.replace("  captureKey: mini-bundle\n", f"  captureKey: {key}\n" if key else "")
    return text + extra


RNG_BLOCK = "rng:\n  kind: pcg32\n  seed: 42\n"
PMF_TEXT = MINI.replace(
    """  - id: wholesale_demand
    kind: expr
    expr: "3.5 + 0"
""",
    """  - id: wholesale_demand
    kind: pmf
    pmf:
      values: [3, 4]
      probabilities: [0.5, 0.5]
""",
).replace("id: mini-loop", "id: mini-pmf")


@pytest.fixture(name="roots")
def _roots(tmp_path: Path) -> Roots:
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "mini.yaml").write_text(MINI)
    (templates / "mini-nokey.yaml").write_text(_variant("mini-nokey", key=None))
    (templates / "mini-rng.yaml").write_text(
        _variant("mini-rng", key="rng-bundle", extra=RNG_BLOCK)
    )
    (templates / "mini-pmf.yaml").write_text(PMF_TEXT.replace("mini-bundle", "pmf-bundle"))
    (templates / "mini-other.yaml").write_text(_variant("mini-other", key="mini-bundle"))
    runs, telemetry = tmp_path / "runs", tmp_path / "telemetry"
    runs.mkdir()
    telemetry.mkdir()
    return Roots(runs=runs, telemetry=telemetry, templates=(templates,))


def _request(**fields: Any) -> RunRequest:
    body: dict[str, Any] = {"templateId": "mini-loop", "mode": "telemetry"}
    options = fields.pop("options", None)
    body.update(fields)
    if options:
        body["options"] = options
    return RunRequest.model_validate_json(json.dumps(body))


def _run(roots: Roots, **fields: Any) -> Any:
    return orchestrate(_request(**fields), roots, request_id="req-1", clock=lambda: FIXED)


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``root`` with (inode, mtime_ns)."""
    out = {}
    for current, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            path = Path(current) / name
            stat = path.stat()
            out[str(path.relative_to(root))] = (stat.st_ino, stat.st_mtime_ns)
    return out


def _assert_error(result: Any, code: ErrorCode, message: str) -> None:
    assert result.state is State.FAILED
    assert result.error is not None
    assert (result.error.code, result.error.message) == (code, message)


class TestTelemetryStateMachine:
    def test_missing_bundle_is_generated_then_replayed(self, roots: Roots) -> None:
        """Missing + autoCapture: simulate, capture, publish, bundle.json, replay; 'generated'."""
        result = _run(roots)
        assert result.state is State.SUCCEEDED
        assert result.capture.status is CaptureStatus.GENERATED
        assert result.capture_generated is True
        assert result.capture.capture_key == "mini-bundle"
        assert result.capture.reason == "Bundle was missing; generated from a simulation run."
        sim_hash = input_hash("mini-loop", "1.0.0", "simulation", {}, {}, "pcg32", 123)
        assert result.capture.source_run_id == deterministic_run_id("mini-loop", sim_hash)
        bundle = roots.telemetry / "mini-bundle"
        info = json.loads((bundle / "bundle.json").read_text())
        assert list(info) == [
            "schemaVersion",
            "createdAtUtc",
            "sourceRunId",
            "templateId",
            "templateVersion",
            "captureKey",
            "parametersHash",
            "rngSeed",
            "scenarioHash",
            "generator",
        ]
        assert info["createdAtUtc"] == "2025-01-02T03:04:05.6789010Z"
        assert info["sourceRunId"] == result.capture.source_run_id
        assert info["parametersHash"] == parameters_hash("mini-loop", "1.0.0", None, {})
        assert info["rngSeed"] is None
        assert info["generator"] == "flowdrop/0.1.0"
        run = result.run
        assert (run.mode.value, run.was_reused, run.path) == ("telemetry", False, run.run_id)
        assert (roots.runs / run.run_id / "model" / "telemetry" / "total_arrivals.csv").is_file()
        assert set(result.timings) >= {"validate", "lockWait", "simulate", "capture", "replay"}
        assert sorted(p.name for p in roots.telemetry.iterdir()) == [".locks", "mini-bundle"]

    def test_existing_bundle_is_reused_without_simulation_or_capture(self, roots: Roots) -> None:
        """Present bundle: status 'reused', and nothing under the roots is created or touched."""
        first = _run(roots)
        before_tel, before_runs = _tree(roots.telemetry), _tree(roots.runs)
        second = _run(roots)
        assert second.capture.status is CaptureStatus.REUSED
        assert second.capture_generated is False
        assert second.capture.reason == "Bundle already exists under the telemetry root."
        assert second.capture.source_run_id == first.capture.source_run_id
        assert second.run.was_reused is True
        assert "simulate" not in second.timings and "capture" not in second.timings
        assert _tree(roots.telemetry) == before_tel
        assert _tree(roots.runs) == before_runs

    def test_reused_bundle_is_replayed_into_a_new_run(self, roots: Roots) -> None:
        """A different replay (other run id) reuses the bundle and replays it."""
        _run(roots)
        result = _run(roots, options={"runId": "second-replay"})
        assert result.capture.status is CaptureStatus.REUSED
        assert (result.run.run_id, result.run.was_reused) == ("second-replay", False)
        assert "replay" in result.timings and "simulate" not in result.timings

    def test_force_capture_regenerates(self, roots: Roots) -> None:
        """forceCapture replaces the bundle (new inode), re-replays, reuses the simulation run."""
        first = _run(roots)
        bundle = roots.telemetry / "mini-bundle"
        old_inode = bundle.stat().st_ino
        sim_dir = roots.runs / first.capture.source_run_id
        sim_stat = (sim_dir.stat().st_ino, (sim_dir / "run.json").stat().st_mtime_ns)
        forced = _run(roots, options={"forceCapture": True})
        assert forced.capture.status is CaptureStatus.GENERATED
        assert forced.capture.reason == "options.forceCapture: bundle regenerated."
        assert bundle.stat().st_ino != old_inode
        assert forced.run.was_reused is False
        assert "simulate" not in forced.timings
        assert (sim_dir.stat().st_ino, (sim_dir / "run.json").stat().st_mtime_ns) == sim_stat
        assert not [p for p in roots.telemetry.iterdir() if p.name.startswith(".tmp-")]
        assert not [p for p in roots.runs.iterdir() if p.name.startswith(".tmp-")]

    def test_existing_deterministic_simulation_run_is_reused_for_capture(
        self, roots: Roots
    ) -> None:
        """A simulation run with the same inputs is captured as it is, not simulated again."""
        sim = _run(roots, mode="simulation")
        sim_dir = roots.runs / sim.run.run_id
        stamp = (sim_dir / "run.json").stat().st_mtime_ns
        result = _run(roots)
        assert result.capture.source_run_id == sim.run.run_id
        assert "simulate" not in result.timings
        assert (sim_dir / "run.json").stat().st_mtime_ns == stamp

    def test_auto_capture_off_is_capture_missing(self, roots: Roots) -> None:
        """Opt-out with a missing bundle fails with capture_missing and writes nothing."""
        result = _run(roots, options={"autoCapture": False})
        _assert_error(
            result,
            ErrorCode.CAPTURE_MISSING,
            "Telemetry bundle 'mini-bundle' does not exist under the telemetry root and "
            "options.autoCapture is false: capture it first, or set options.autoCapture to true.",
        )
        assert result.error.details == {"captureKey": "mini-bundle"}
        assert list(roots.telemetry.iterdir()) == [] and list(roots.runs.iterdir()) == []

    def test_auto_capture_off_still_reuses_existing_bundle(self, roots: Roots) -> None:
        """Opt-out only matters when the bundle is missing."""
        _run(roots)
        result = _run(roots, options={"autoCapture": False, "runId": "manual"})
        assert result.capture.status is CaptureStatus.REUSED

    def test_no_capture_key_and_no_directory(self, roots: Roots) -> None:
        """A template without captureKey needs telemetry.captureDirectory."""
        result = _run(roots, templateId="mini-nokey")
        _assert_error(
            result,
            ErrorCode.CAPTURE_KEY_MISSING,
            "Template 'mini-nokey' has no metadata.captureKey and the request names no bundle: "
            "set telemetry.captureDirectory to a bundle under the telemetry root, or add "
            "metadata.captureKey to the template.",
        )
        assert list(roots.telemetry.iterdir()) == []

    def test_explicit_capture_directory_is_generated_for_keyless_template(
        self, roots: Roots
    ) -> None:
        """An explicit captureDirectory names the bundle (and is auto-captured when missing)."""
        result = _run(roots, templateId="mini-nokey", telemetry={"captureDirectory": "adhoc"})
        assert result.capture.status is CaptureStatus.GENERATED
        assert result.capture.capture_key == "adhoc"
        assert (roots.telemetry / "adhoc" / "manifest.json").is_file()

    def test_rng_template_without_seed_is_blocked(self, roots: Roots) -> None:
        """An rng block without rng.seed: stochastic_template listing reasons; nothing written."""
        with capture_logs() as logs:
            result = _run(roots, templateId="mini-rng")
        _assert_error(
            result,
            ErrorCode.STOCHASTIC_TEMPLATE,
            "Template 'mini-rng' declares randomness (rng block); a telemetry bundle is generated "
            'from it only when the request pins rng.seed, e.g. "rng": {"kind": "pcg32", '
            '"seed": 123}.',
        )
        assert result.error.details == {"templateId": "mini-rng", "reasons": ["rng block"]}
        assert list(roots.telemetry.iterdir()) == [] and list(roots.runs.iterdir()) == []
        blocked = [e for e in logs if e["event"] == "autocapture_blocked"]
        assert blocked and blocked[0]["captureKey"] == "rng-bundle"

    def test_pmf_template_without_seed_lists_pmf_nodes(self, roots: Roots) -> None:
        """PMF nodes make a template stochastic too; details.reasons names them."""
        result = _run(roots, templateId="mini-pmf")
        assert result.error.code is ErrorCode.STOCHASTIC_TEMPLATE
        assert result.error.details["reasons"] == ["pmf node 'wholesale_demand'"]

    def test_seeded_stochastic_template_records_seed(self, roots: Roots) -> None:
        """With rng.seed the capture runs and bundle.json records the seed."""
        result = _run(roots, templateId="mini-rng", rng={"kind": "pcg32", "seed": 7})
        assert result.capture.status is CaptureStatus.GENERATED
        info = json.loads((roots.telemetry / "rng-bundle" / "bundle.json").read_text())
        assert info["rngSeed"] == 7
        assert info["parametersHash"] == parameters_hash("mini-rng", "1.0.0", 7, {})

    def test_reused_bundle_with_other_seed_or_parameters_warns(self, roots: Roots) -> None:
        """A reused bundle captured with another seed/parameters is reused, with a warning."""
        _run(roots, templateId="mini-rng", rng={"kind": "pcg32", "seed": 7})
        result = _run(
            roots,
            templateId="mini-rng",
            rng={"kind": "pcg32", "seed": 8},
            parameters={"retailBase": 11},
        )
        assert result.capture.status is CaptureStatus.REUSED
        warning = result.capture_warnings[-1]
        assert warning.code == "capture_provenance_mismatch"
        assert warning.message == (
            "Reused bundle 'rng-bundle' was captured with a different rng seed 7, parameters "
            "than this request asks for; it was reused anyway (set options.forceCapture to "
            "regenerate it)."
        )
        assert result.capture.warnings == result.capture_warnings

    def test_bundle_shared_by_another_template_warns(self, roots: Roots) -> None:
        """Two templates sharing a captureKey: the second reuses the bundle with a warning."""
        _run(roots)
        result = _run(roots, templateId="mini-other")
        assert result.capture.status is CaptureStatus.REUSED
        assert result.capture_warnings[-1].message.startswith(
            "Reused bundle 'mini-bundle' was captured with a different template mini-loop 1.0.0"
        )

    def test_concurrent_generation_is_rechecked_under_the_lock(self, roots: Roots) -> None:
        """A bundle published while this request waited for the lock is reused, not rebuilt."""
        elsewhere = Roots(roots.runs, roots.telemetry / "x", roots.templates)
        elsewhere.telemetry.mkdir()
        _run(elsewhere, options={"dryRun": False, "runId": "premade"})
        results: list[Any] = []
        with capture_lock(roots.telemetry, "mini-bundle"):
            worker = threading.Thread(target=lambda: results.append(_run(roots)))
            worker.start()
            time.sleep(0.2)
            os.rename(elsewhere.telemetry / "mini-bundle", roots.telemetry / "mini-bundle")
        worker.join(30)
        (result,) = results
        assert result.capture.status is CaptureStatus.REUSED
        assert result.capture.reason == "Bundle was generated by a concurrent request."
        assert result.timings["lockWait"] >= 0.1

    def test_dry_run_with_missing_bundle_plans_pending_and_writes_nothing(
        self, roots: Roots
    ) -> None:
        """dryRun reports the pending capture and writes nothing (not even a lock file)."""
        result = _run(roots, options={"dryRun": True})
        assert result.state is State.SUCCEEDED
        assert result.plan is not None
        assert result.plan.capture.status is CaptureStatus.PENDING
        assert result.capture.status is CaptureStatus.PENDING
        assert result.plan.would_reuse_run is False
        assert result.run is None
        assert list(roots.telemetry.iterdir()) == [] and list(roots.runs.iterdir()) == []

    def test_dry_run_never_reuses_existing_run(self, roots: Roots) -> None:
        """G-034: a dry run returns a plan even when the deterministic run exists."""
        done = _run(roots)
        before = _tree(roots.runs)
        result = _run(roots, options={"dryRun": True})
        assert result.run is None
        assert result.plan.run_id == done.run.run_id
        assert result.plan.would_reuse_run is True
        assert result.plan.capture.status is CaptureStatus.REUSED
        assert _tree(roots.runs) == before

    def test_dry_run_still_refuses_stochastic_capture(self, roots: Roots) -> None:
        """A plan that would need a forbidden capture is refused like the real request."""
        result = _run(roots, templateId="mini-rng", options={"dryRun": True})
        assert result.error.code is ErrorCode.STOCHASTIC_TEMPLATE


class TestBundleProblems:
    def test_tampered_bundle_is_bundle_invalid(self, roots: Roots) -> None:
        """A file whose bytes no longer match the manifest hash fails validation, by name."""
        _run(roots)
        (roots.telemetry / "mini-bundle" / "total_served.csv").write_text(
            "bin_index,classId,value\n0,DEFAULT,1\n1,DEFAULT,1\n2,DEFAULT,1\n3,DEFAULT,1\n"
        )
        result = _run(roots, options={"runId": "after-tamper"})
        assert result.error.code is ErrorCode.BUNDLE_INVALID
        assert result.error.message == (
            "Telemetry bundle 'mini-bundle' is invalid: file 'total_served.csv' does not match "
            "its manifest hash."
        )
        assert not (roots.runs / "after-tamper").exists()

    def test_grid_mismatch_is_bundle_invalid(self, roots: Roots) -> None:
        """A bundle captured on another grid does not replay on this one."""
        _run(roots)
        result = _run(roots, parameters={"bins": 6})
        assert result.error.code is ErrorCode.BUNDLE_INVALID
        assert result.error.message == (
            "Telemetry bundle 'mini-bundle' is invalid: its grid (4 x 5 minutes) does not match "
            "the template's (6 x 5 minutes)."
        )

    def test_directory_without_manifest_is_bundle_invalid(self, roots: Roots) -> None:
        """A directory under the key without manifest.json is not silently replaced."""
        (roots.telemetry / "mini-bundle").mkdir()
        result = _run(roots)
        assert result.error.code is ErrorCode.BUNDLE_INVALID
        assert result.error.message == (
            "Telemetry bundle 'mini-bundle' is invalid: manifest.json is missing."
        )

    def test_binding_to_missing_file_is_bundle_invalid(self, roots: Roots) -> None:
        """A telemetry binding must name a file of the bundle."""
        _run(roots)
        result = _run(
            roots,
            telemetry={"bindings": {"telemetryRetailSource": "nope.csv"}},
            options={"runId": "bound"},
        )
        assert result.error.code is ErrorCode.BUNDLE_INVALID
        assert result.error.message == (
            "Telemetry bundle 'mini-bundle' has no file 'nope.csv' (binding "
            "'telemetryRetailSource')."
        )

    def test_binding_to_existing_file_replays(self, roots: Roots) -> None:
        """A valid binding joins the input hash and replays."""
        _run(roots)
        result = _run(
            roots, telemetry={"bindings": {"telemetryRetailSource": "total_arrivals.csv"}}
        )
        assert result.state is State.SUCCEEDED
        assert result.run.was_reused is False


class TestFailures:
    def test_template_not_found(self, roots: Roots) -> None:
        """Unknown template ids are template_not_found."""
        result = _run(roots, templateId="nope")
        _assert_error(result, ErrorCode.TEMPLATE_NOT_FOUND, "Template 'nope' was not found.")

    def test_unknown_parameter_is_parameter_invalid(self, roots: Roots) -> None:
        """A parameter the template does not declare is refused before any work."""
        result = _run(roots, parameters={"nope": 1})
        _assert_error(
            result, ErrorCode.PARAMETER_INVALID, "Template 'mini-loop' has no parameter 'nope'."
        )

    def test_binding_for_unknown_parameter(self, roots: Roots) -> None:
        """Bindings name template parameters."""
        result = _run(roots, telemetry={"bindings": {"nope": "x.csv"}})
        assert result.error.code is ErrorCode.PARAMETER_INVALID

    def test_unsupported_rng_kind(self, roots: Roots) -> None:
        """Only pcg32 is supported (FlowTime's wording)."""
        result = _run(roots, rng={"kind": "mt19937", "seed": 1})
        _assert_error(
            result, ErrorCode.INVALID_REQUEST, "Unsupported rng.kind 'mt19937'. Expected 'pcg32'."
        )

    def test_simulation_with_bindings(self, roots: Roots) -> None:
        """Bindings on a simulation request are refused with FlowTime's message."""
        result = _run(
            roots, mode="simulation", telemetry={"bindings": {"telemetryRetailSource": "a.csv"}}
        )
        _assert_error(
            result,
            ErrorCode.INVALID_REQUEST,
            "Telemetry bindings were supplied but capture directory is missing.",
        )

    @pytest.mark.parametrize("action", ["eio", "enospc"])
    def test_io_error_before_bundle_publish_leaves_nothing(
        self, roots: Roots, monkeypatch: pytest.MonkeyPatch, action: str
    ) -> None:
        """A failed capture is storage_error, logged, and leaves no staging or partial bundle."""
        with armed(monkeypatch, f"capture_before_publish={action}"), capture_logs() as logs:
            result = _run(roots)
        assert result.state is State.FAILED
        strerror = {"eio": "Input/output error", "enospc": "No space left on device"}[action]
        _assert_error(
            result,
            ErrorCode.STORAGE_ERROR,
            f"Could not generate telemetry bundle 'mini-bundle': {strerror}.",
        )
        assert [p.name for p in roots.telemetry.iterdir()] == [".locks"]
        assert [e["event"] for e in logs if e["event"].startswith("autocapture")] == [
            "autocapture_started",
            "autocapture_failed",
        ]
        assert _run(roots).capture.status is CaptureStatus.GENERATED

    def test_io_error_before_run_publish_leaves_no_run(
        self, roots: Roots, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A failed replay publishes no run directory and claims no success."""
        with armed(monkeypatch, "replay_before_publish=eio"):
            result = _run(roots)
        assert result.error.code is ErrorCode.STORAGE_ERROR
        assert result.run is None
        names = sorted(p.name for p in roots.runs.iterdir())
        assert names == [result_source_run(roots)]

    def test_missing_root_is_storage_error(self, tmp_path: Path, roots: Roots) -> None:
        """A configured root that does not exist is storage_error, not created."""
        broken = Roots(tmp_path / "absent", roots.telemetry, roots.templates)
        result = orchestrate(_request(), broken, request_id="r")
        _assert_error(result, ErrorCode.STORAGE_ERROR, "runs root is not an existing directory.")
        assert not (tmp_path / "absent").exists()


def result_source_run(roots: Roots) -> str:
    info = json.loads((roots.telemetry / "mini-bundle" / "bundle.json").read_text())
    return str(info["sourceRunId"])


class TestSimulationMode:
    def test_simulation_run_not_requiring_capture(self, roots: Roots) -> None:
        """Simulation: deterministic id from the input hash, capture notRequired."""
        result = _run(roots, mode="simulation")
        expected = deterministic_run_id(
            "mini-loop", input_hash("mini-loop", "1.0.0", "simulation", {}, {}, "pcg32", 123)
        )
        assert result.run.run_id == expected
        assert result.capture.status is CaptureStatus.NOT_REQUIRED
        assert result.capture_generated is False
        assert (roots.runs / expected / "run.json").is_file()

    def test_simulation_reuse_and_overwrite(self, roots: Roots) -> None:
        """Same inputs reuse the run (sentinel kept); overwriteExisting regenerates it."""
        first = _run(roots, mode="simulation")
        sentinel = roots.runs / first.run.run_id / "sentinel"
        sentinel.write_text("x")
        again = _run(roots, mode="simulation")
        assert again.run.was_reused is True and sentinel.exists()
        forced = _run(roots, mode="simulation", options={"overwriteExisting": True})
        assert forced.run.was_reused is False and not sentinel.exists()

    def test_random_run_id_when_not_deterministic(self, roots: Roots) -> None:
        """deterministicRunId false gives run_<timestamp>_<8 hex>."""
        result = _run(roots, mode="simulation", options={"deterministicRunId": False})
        assert result.run.run_id.startswith("run_20250102T030405Z_")
        assert len(result.run.run_id) == len("run_20250102T030405Z_") + 8

    def test_explicit_run_id_of_another_template_is_refused(self, roots: Roots) -> None:
        """An explicit runId that names someone else's run is not silently reused."""
        _run(roots, mode="simulation", options={"runId": "mine"})
        result = _run(roots, mode="simulation", templateId="mini-nokey", options={"runId": "mine"})
        _assert_error(
            result,
            ErrorCode.INVALID_REQUEST,
            "Run directory 'mine' already exists and is not a simulation run of 'mini-nokey'. "
            "Enable overwriteExisting to replace it.",
        )

    def test_rng_template_simulation_needs_seed(self, roots: Roots) -> None:
        """FlowTime requires rng.seed for templates with an rng block."""
        result = _run(roots, mode="simulation", templateId="mini-rng")
        assert result.error.code is ErrorCode.STOCHASTIC_TEMPLATE
        assert result.error.message.startswith(
            "Template 'mini-rng' declares randomness (rng block); it is simulated only when"
        )

    def test_simulation_dry_run(self, roots: Roots) -> None:
        """A simulation dry run plans and writes nothing."""
        result = _run(roots, mode="simulation", options={"dryRun": True})
        assert result.plan.capture.status is CaptureStatus.NOT_REQUIRED
        assert list(roots.runs.iterdir()) == []


class TestObservability:
    def test_progress_messages_in_order(self, roots: Roots) -> None:
        """A first capture reports validating, capturing (the source run's simulation is a step
        of it), replaying: one status write each."""
        seen: list[tuple[Phase, str]] = []
        orchestrate(_request(), roots, request_id="p", progress=lambda p, m: seen.append((p, m)))
        assert seen == [
            (Phase.VALIDATING, "Validating request…"),
            (Phase.CAPTURING, "Generating telemetry bundle…"),
            (Phase.REPLAYING, "Replaying telemetry…"),
        ]

    def test_lifecycle_events_are_bound(self, roots: Roots) -> None:
        """started/succeeded then reused, each with templateId, captureKey, requestId, runId."""
        with capture_logs() as logs:
            first = _run(roots)
            _run(roots)
        events = [e for e in logs if e["event"].startswith("autocapture_")]
        assert [e["event"] for e in events] == [
            "autocapture_started",
            "autocapture_succeeded",
            "autocapture_reused",
        ]
        for event in events:
            assert event["templateId"] == "mini-loop"
            assert event["captureKey"] == "mini-bundle"
            assert event["requestId"] == "req-1"
            assert event["runId"] == first.run.run_id

    def test_results_carry_no_absolute_paths(self, roots: Roots, tmp_path: Path) -> None:
        """No result or error mentions the host's absolute paths."""
        texts = [
            _run(roots).model_dump_json(),
            _run(roots, options={"autoCapture": False, "forceCapture": False}).model_dump_json(),
            _run(roots, templateId="mini-rng").model_dump_json(),
            _run(roots, telemetry={"captureDirectory": "../x"}).model_dump_json(),
        ]
        for text in texts:
            assert str(tmp_path) not in text


def test_same_request_same_bytes(tmp_path: Path) -> None:
    """With a fixed clock two fresh worlds hold byte-identical runs and bundles."""
    listings = []
    for name in ("a", "b"):
        base = tmp_path / name
        base.mkdir()
        templates = base / "templates"
        templates.mkdir()
        (templates / "mini.yaml").write_text(MINI)
        (base / "runs").mkdir()
        (base / "telemetry").mkdir()
        roots = Roots(base / "runs", base / "telemetry", (templates,))
        result = orchestrate(_request(), roots, request_id="d", clock=lambda: FIXED)
        assert result.state is State.SUCCEEDED
        listing = {}
        for root in (roots.runs, roots.telemetry):
            for path in sorted(root.rglob("*")):
                if path.is_file():
                    listing[str(path.relative_to(base))] = path.read_bytes()
        listings.append(listing)
    assert listings[0].keys() == listings[1].keys()
    assert listings[0] == listings[1]


def test_crash_debris_of_a_capture_is_removed_under_the_lock(roots: Roots) -> None:
    """A staging directory left by a killed capture of the same key is cleaned up."""
    debris = roots.telemetry / ".tmp-mini-bundle.deadbeef0000"
    debris.mkdir()
    (debris / "manifest.json").write_text("{}")
    other = roots.telemetry / ".tmp-mini-bundle-2.deadbeef0000"
    other.mkdir()
    result = _run(roots)
    assert result.capture.status is CaptureStatus.GENERATED
    assert not debris.exists()
    assert other.exists()  # another key's staging is not ours to touch


def test_template_lookup_follows_file_changes(roots: Roots) -> None:
    """The memoised template lookup notices a template being renamed or removed."""
    assert _run(roots, options={"dryRun": True}).state is State.SUCCEEDED
    path = roots.templates[0] / "mini.yaml"
    path.write_text(MINI.replace("id: mini-loop", "id: mini-renamed"))
    result = _run(roots, options={"dryRun": True})
    _assert_error(result, ErrorCode.TEMPLATE_NOT_FOUND, "Template 'mini-loop' was not found.")
    assert _run(roots, templateId="mini-renamed", options={"dryRun": True}).error is None
    path.unlink()
    result = _run(roots, templateId="mini-renamed", options={"dryRun": True})
    assert result.error is not None and result.error.code is ErrorCode.TEMPLATE_NOT_FOUND


def test_dry_run_validates_an_existing_bundle(roots: Roots) -> None:
    """A dry run over an existing but broken bundle reports bundle_invalid, like the real run."""
    _run(roots)
    (roots.telemetry / "mini-bundle" / "total_errors.csv").unlink()
    result = _run(roots, options={"dryRun": True})
    _assert_error(
        result,
        ErrorCode.BUNDLE_INVALID,
        "Telemetry bundle 'mini-bundle' is invalid: file 'total_errors.csv' listed in "
        "manifest.json is missing.",
    )


class TestDurability:
    def _count(self, monkeypatch: pytest.MonkeyPatch) -> list[str]:
        """syncfs (a fake libc on a filesystem said to be ext4) and fsync calls, by path."""
        from flowdrop.core.fs import storage

        calls: list[str] = []
        real_fsync = os.fsync

        class Libc:
            def syncfs(self, fd: int) -> int:
                calls.append("syncfs " + os.readlink(f"/proc/self/fd/{fd}"))
                return 0

        def fsync(fd: int) -> None:
            calls.append("fsync " + os.readlink(f"/proc/self/fd/{fd}"))
            real_fsync(fd)

        monkeypatch.setattr(storage, "_libc", Libc())
        monkeypatch.setattr(storage, "filesystem_type", lambda _path: "ext4")
        monkeypatch.setattr(os, "fsync", fsync)
        return calls

    def test_a_generation_publishes_three_trees_with_one_parent_fsync_at_the_end(
        self, roots: Roots, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Source run, bundle, replay run: each tree's syncfs commits the renames published
        before it, and the last rename is fsynced before the result is returned."""
        calls = self._count(monkeypatch)
        result = _run(roots)
        assert result.capture.status is CaptureStatus.GENERATED
        kinds = [call.split(" ", 1)[0] for call in calls]
        assert kinds == ["syncfs", "syncfs", "syncfs", "fsync"]
        assert calls[-1] == f"fsync {roots.runs}"

    def test_a_failed_replay_still_leaves_the_published_bundle_durable(
        self, roots: Roots, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        calls = self._count(monkeypatch)
        with armed(monkeypatch, "replay_before_publish=eio"):
            result = _run(roots)
        assert result.error is not None and result.error.code is ErrorCode.STORAGE_ERROR
        assert (roots.telemetry / "mini-bundle" / "bundle.json").is_file()
        # The source run's rename was committed by the bundle's syncfs; the bundle's by this.
        assert calls[-1] == f"fsync {roots.telemetry}"

    def test_without_flush_the_last_renames_are_left_to_the_caller(
        self, roots: Roots, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """flush=False (the daemon, whose end batch syncs the roots with the result): the three
        trees' syncfs only, no parent fsync of its own."""
        calls = self._count(monkeypatch)
        request = _request()
        result = orchestrate(request, roots, request_id="req-1", clock=lambda: FIXED, flush=False)
        assert result.capture.status is CaptureStatus.GENERATED
        assert [call.split(" ", 1)[0] for call in calls] == ["syncfs", "syncfs", "syncfs"]
