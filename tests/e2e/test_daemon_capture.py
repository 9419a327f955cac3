"""End to end with the real orchestrator: every auto-capture branch, driven through files."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from flowdrop.daemon.testing import (
    DaemonProcess,
    drop_json,
    mini_template,
    read_json,
    terminal_status,
    wait_until,
    write_config,
)


class World:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.spool = base / "spool"
        self.outbox = self.spool / "outbox"

    def run(self, request_id: str, template_id: str, **extra: object) -> dict[str, object]:
        body: dict[str, object] = {
            "schemaVersion": 1,
            "requestId": request_id,
            "templateId": template_id,
            "mode": "telemetry",
        }
        body.update(extra)
        drop_json(self.spool / "inbox", f"{request_id}.json", body)
        wait_until(
            lambda: terminal_status(self.outbox, request_id),
            timeout=30,
            message=f"{request_id} to end",
        )
        return read_json(self.outbox / f"{request_id}.result.json")  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    base = tmp_path_factory.mktemp("capture-e2e")
    templates = base / "templates"
    templates.mkdir()
    (templates / "orders.yaml").write_text(mini_template("mini-orders", "mini-orders-bundle"))
    (templates / "other.yaml").write_text(mini_template("mini-other", "mini-other-bundle"))
    (templates / "nokey.yaml").write_text(mini_template("mini-nokey", None))
    (templates / "stoch.yaml").write_text(
        mini_template("mini-stoch", "mini-stoch-bundle", extra="rng:\n  kind: pcg32\n  seed: 42\n")
    )
    config = write_config(base, processor=None, workers=2)
    daemon = DaemonProcess(config)
    daemon.wait_ready()
    yield World(base)
    assert daemon.stop() == 0
    assert daemon.events("request_finished")


def test_missing_bundle_is_generated_then_replayed(world: World) -> None:
    """Bundle missing + autoCapture → simulate, capture, publish, replay: capture generated."""
    result = world.run("gen-1", "mini-orders")
    assert result["state"] == "succeeded", result
    assert result["capture"]["status"] == "generated"
    assert result["capture"]["captureKey"] == "mini-orders-bundle"
    assert result["captureGenerated"] is True
    assert result["run"]["mode"] == "telemetry"
    assert not Path(result["run"]["path"]).is_absolute()
    assert (world.base / "telemetry" / "mini-orders-bundle" / "bundle.json").exists()
    assert (world.base / "runs" / result["run"]["path"] / "run.json").exists()


def test_present_bundle_is_reused(world: World) -> None:
    """The same template again: the bundle is reused, not regenerated."""
    world.run("gen-first", "mini-orders")
    bundle = world.base / "telemetry" / "mini-orders-bundle" / "bundle.json"
    before = bundle.read_bytes()
    result = world.run("reuse-1", "mini-orders")
    assert result["state"] == "succeeded"
    assert result["capture"]["status"] == "reused"
    assert result["captureGenerated"] is False
    assert bundle.read_bytes() == before


def test_stochastic_template_without_seed_is_blocked(world: World) -> None:
    """A template with an rng block and no rng.seed in the request: stochastic_template."""
    result = world.run("stoch-1", "mini-stoch")
    assert result["state"] == "failed"
    assert result["error"]["code"] == "stochastic_template"
    assert not (world.base / "telemetry" / "mini-stoch-bundle").exists()


def test_stochastic_template_with_seed_is_generated(world: World) -> None:
    """The same template with rng.seed: captured, and the seed recorded in bundle.json."""
    result = world.run("stoch-seeded", "mini-stoch", rng={"kind": "pcg32", "seed": 7})
    assert result["state"] == "succeeded", result
    assert result["capture"]["status"] == "generated"
    bundle = json.loads(
        (world.base / "telemetry" / "mini-stoch-bundle" / "bundle.json").read_text()
    )
    assert bundle["rngSeed"] == 7


def test_auto_capture_off_with_missing_bundle_is_capture_missing(world: World) -> None:
    """options.autoCapture false and no bundle: capture_missing, nothing written."""
    result = world.run("missing-1", "mini-other", options={"autoCapture": False})
    assert result["state"] == "failed"
    assert result["error"]["code"] == "capture_missing"
    assert not (world.base / "telemetry" / "mini-other-bundle").exists()


def test_no_capture_key_is_capture_key_missing(world: World) -> None:
    """Telemetry mode, no captureKey, no captureDirectory: capture_key_missing."""
    result = world.run("nokey-1", "mini-nokey")
    assert result["state"] == "failed"
    assert result["error"]["code"] == "capture_key_missing"
    assert "captureKey" in result["error"]["message"]


def test_unknown_template_is_template_not_found(world: World) -> None:
    """A templateId no template directory has: template_not_found."""
    result = world.run("nf-1", "no-such-template")
    assert result["state"] == "failed"
    assert result["error"]["code"] == "template_not_found"


def test_running_statuses_show_the_orchestrators_phases(world: World) -> None:
    """The status seq of a generated capture went through several running updates."""
    world.run("phases-1", "mini-other")
    status = read_json(world.outbox / "phases-1.status.json")
    assert status["state"] == "succeeded"
    assert status["seq"] >= 5


def test_outbox_never_contains_absolute_paths(world: World) -> None:
    """After all the branches above no outbox file names a host path."""
    world.run("paths-1", "mini-orders")
    for path in world.outbox.iterdir():
        assert str(world.base) not in path.read_text(), path.name


@pytest.mark.parametrize("point", ["after_running_status", "result_before_rename", "after_result"])
def test_crash_during_an_auto_capture_request_ends_once_after_restart(
    tmp_path: Path, point: str
) -> None:
    """Real orchestrator, SIGKILL at a spool failpoint, restart: one outcome, one bundle."""
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "orders.yaml").write_text(mini_template("mini-orders", "mini-orders-bundle"))
    config = write_config(tmp_path, processor=None, workers=1)
    spool = tmp_path / "spool"
    (spool / "inbox").mkdir(parents=True)
    body = {"requestId": "crashy", "templateId": "mini-orders", "mode": "telemetry"}
    drop_json(spool / "inbox", "crashy.json", body)
    crashing = DaemonProcess(config, env={"FLOWDROP_FAILPOINTS": f"{point}=kill"})
    assert crashing.proc.wait(timeout=30) == -9
    crashing.kill()
    restarted = DaemonProcess(config)
    restarted.wait_ready()
    status = wait_until(lambda: terminal_status(spool / "outbox", "crashy"), timeout=30)
    wait_until(lambda: (spool / "done" / "crashy.json").exists(), message="done/")
    assert restarted.stop() == 0
    assert status["state"] == "succeeded"
    result = read_json(spool / "outbox" / "crashy.result.json")
    expected = "generated" if point == "after_running_status" else None
    if expected:
        assert result["capture"]["status"] == expected
    else:  # the crashed attempt published the bundle (and maybe the result) already
        assert result["capture"]["status"] in {"generated", "reused"}
    bundles = [p.name for p in (tmp_path / "telemetry").iterdir() if not p.name.startswith(".")]
    assert bundles == ["mini-orders-bundle"]
