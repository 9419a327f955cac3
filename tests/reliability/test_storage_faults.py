"""Storage faults: fsync EIO and ENOSPC → ``storage_error``, no success claimed, nothing torn.

Injected three ways: failpoints inside the atomic writer (``result_before_rename=eio|enospc``)
in a real daemon; ``os.fsync`` monkeypatched to fail for result files (in-process handler);
and real full filesystems — small tmpfs mounts for the spool and for the runs root (skipped
when mounting is not permitted). Reproduce::

    .venv/bin/pytest tests/reliability/test_storage_faults.py -v
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import time
from pathlib import Path

import pytest

from flowdrop.core.contract import RunResult
from flowdrop.core.errors import FlowdropError
from flowdrop.core.fs import writebatch
from flowdrop.daemon.process import Limits, RequestHandler
from flowdrop.daemon.processor import default_processor
from flowdrop.daemon.spool import Spool
from flowdrop.daemon.testing import read_json, write_config
from tests.reliability.reliability_world import TINY_TEMPLATE, Drop, World, request_body, tmpfs


@pytest.mark.parametrize("action", ["eio", "enospc"])
def test_result_write_fault_is_storage_error(world: World, action: str) -> None:
    """The first result write fails: the request ends failed/storage_error, ran once."""
    world.config(workers=1)
    world.drop("sf", state="failed", code="storage_error")
    world.drop("after", state="succeeded")
    daemon = world.start(env={"FLOWDROP_FAILPOINTS": f"result_before_rename={action}@1"})
    world.wait_settled()
    assert daemon.stop() == 0
    report = world.check()
    result = read_json(world.outbox / "sf.result.json")
    strerror = os.strerror(errno.EIO if action == "eio" else errno.ENOSPC)
    assert result["error"]["message"] == f"Could not write 'sf.result.json': {strerror}."
    assert report.executions["sf"] == 1
    assert not [p for p in world.outbox.iterdir() if p.name.startswith(".tmp-")], "temp left behind"


EIO_REQUEST = {"requestId": "eio", "templateId": "tiny", "mode": "simulation"}


def _in_process(tmp_path: Path) -> tuple[Spool, RequestHandler]:
    """A spool and a handler with the real orchestrator and one tiny template, no daemon."""
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "tiny.yaml").write_text(TINY_TEMPLATE.format(id="tiny", key="k"))
    from flowdrop.daemon.config import load_settings

    settings = load_settings(write_config(tmp_path, processor=None))
    for root in (settings.runs_root, settings.telemetry_root):
        root.mkdir(parents=True)
    spool = Spool(settings.spool, "me")
    spool.ensure()
    roots = (settings.runs_root, settings.telemetry_root)
    handler = RequestHandler(spool, default_processor(settings), Limits(4096, 3), roots=roots)
    return spool, handler


def test_fsync_eio_never_trusted_in_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """os.fsync → EIO on the result's temp file: failed/storage_error; a retry does not trust it.

    The end batch syncs its files with one ``syncfs`` where the filesystem flushes on it; here
    the spool is treated as one where it does not (FUSE), so each temporary gets its fsync.
    """
    spool, handler = _in_process(tmp_path)
    real_fsync = os.fsync
    failures: list[str] = []

    def fsync(fd: int) -> None:
        target = os.readlink(f"/proc/self/fd/{fd}")
        if ".result.json." in target:
            failures.append(target)
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real_fsync(fd)

    monkeypatch.setattr(writebatch, "syncfs", lambda _path: False)
    monkeypatch.setattr(os, "fsync", fsync)
    (spool.work / "eio.json").write_text(json.dumps(EIO_REQUEST))
    with pytest.raises(FlowdropError) as raised:
        handler.handle(spool.work / "eio.json")  # both result writes fail: left for a retry
    assert raised.value.code.value == "storage_error"
    assert len(failures) == 2
    assert not spool.result_path("eio").exists(), "a result became visible after a failed fsync"
    assert (spool.work / "eio.json").exists()
    status = read_json(spool.status_path("eio"))
    assert status["state"] == "running"  # never succeeded
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert handler.handle(spool.work / "eio.json") == "succeeded"
    result = RunResult.model_validate_json(spool.result_path("eio").read_bytes(), strict=False)
    assert result.state.value == "succeeded"
    assert read_json(spool.status_path("eio"))["state"] == "succeeded"
    assert not [p for p in spool.outbox.iterdir() if p.name.startswith(".tmp-")]


def test_syncfs_eio_never_trusted_in_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The end batch's one ``syncfs`` fails (EIO, a writeback error since Linux 5.8): nothing
    of the batch becomes visible, and the retry re-runs and succeeds."""
    spool, handler = _in_process(tmp_path)
    real_syncfs = writebatch.syncfs
    failures: list[str] = []

    def syncfs(path: Path) -> bool:
        if ".result.json." in path.name:  # the end batch: its first file is the result
            failures.append(path.name)
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return real_syncfs(path)

    monkeypatch.setattr(writebatch, "syncfs", syncfs)
    (spool.work / "eio.json").write_text(json.dumps(EIO_REQUEST))
    with pytest.raises(FlowdropError) as raised:
        handler.handle(spool.work / "eio.json")
    assert raised.value.code.value == "storage_error"
    assert raised.value.message == f"Could not write 'eio.result.json': {os.strerror(errno.EIO)}."
    assert len(failures) == 2  # the result, then the storage error in its place
    assert not spool.result_path("eio").exists()
    assert read_json(spool.status_path("eio"))["state"] == "running"
    assert (spool.work / "eio.json").exists()
    monkeypatch.setattr(writebatch, "syncfs", real_syncfs)
    assert handler.handle(spool.work / "eio.json") == "succeeded"
    assert read_json(spool.status_path("eio"))["state"] == "succeeded"
    assert not [p for p in spool.outbox.iterdir() if p.name.startswith(".tmp-")]


def _fill(directory: Path) -> Path:
    """Write a ballast file until the filesystem is full."""
    ballast = directory / "ballast"
    with ballast.open("wb") as handle:
        chunk = b"\0" * (1 << 16)
        try:
            while True:
                handle.write(chunk)
                handle.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return ballast


def test_full_spool_then_space_returns(tmp_path: Path) -> None:
    """Spool on a full 4 MB tmpfs: nothing claims success; after space returns all end once."""
    with tmpfs(tmp_path / "spool", "4m") as mounted:
        if not mounted:
            pytest.skip("mount -t tmpfs not permitted here (failpoint variants cover ENOSPC)")
        world = World(tmp_path)
        try:
            world.config(workers=2, reconcile_interval=0.5, max_attempts=50)
            daemon = world.start()
            staged = world.spool / "staged"
            staged.mkdir()
            for index in range(10):
                (staged / f"full-{index}.json").write_text(
                    json.dumps(request_body(f"full-{index}"))
                )
            ballast = _fill(world.spool)
            for index in range(10):
                os.rename(staged / f"full-{index}.json", world.inbox / f"full-{index}.json")
                world.expect(Drop(f"full-{index}.json", f"full-{index}", "done", None))
            # While full: writes fail with ENOSPC, workers back off; nothing is torn (I2).
            time.sleep(2.0)
            world.check_partial()
            assert daemon.proc.poll() is None
            errors = [e for e in daemon.log_lines() if e.get("event") == "worker_error"]
            assert errors, "the full disk was never hit"
            ballast.unlink()
            shutil.rmtree(staged)
            world.wait_settled(timeout=60)
            assert daemon.stop() == 0
            report = world.check()
            for index in range(10):
                result = read_json(world.outbox / f"full-{index}.result.json")
                assert result["state"] == "succeeded" or result["error"]["code"] == "storage_error"
            assert sum(report.executions.values()) <= 10 + len(errors)
        finally:
            world.close()


def test_full_runs_root_is_storage_error_and_leaves_nothing(tmp_path: Path) -> None:
    """Runs root on a full tmpfs: simulation fails with storage_error, no run or staging left."""
    with tmpfs(tmp_path / "runs", "1m") as mounted:
        if not mounted:
            pytest.skip("mount -t tmpfs not permitted here")
        world = World(tmp_path)
        try:
            world.add_tiny_templates(("tiny", "tiny-key"))
            world.config(workers=1, processor=None)
            ballast = _fill(world.runs)
            daemon = world.start()
            body = {"requestId": "nospace", "templateId": "tiny", "mode": "simulation"}
            world.drop("nospace", body=body, state="failed", code="storage_error")
            world.wait_settled()
            result = read_json(world.outbox / "nospace.result.json")
            assert "No space left on device" in result["error"]["message"], result
            # No run and no staging directory left behind.
            assert sorted(p.name for p in world.runs.iterdir()) == ["ballast", "evil-run"]
            ballast.unlink()
            body = {"requestId": "space-back", "templateId": "tiny", "mode": "simulation"}
            world.drop("space-back", body=body)
            world.wait_settled()
            assert daemon.stop() == 0
            report = world.check(counting=False)
            assert report.runs == 1
        finally:
            world.close()


@pytest.mark.parametrize(
    "spec",
    ["run_before_publish=eio@1", "capture_before_publish=enospc@1", "replay_before_publish=eio@1"],
)
def test_orchestrator_io_errors_publish_nothing(world: World, spec: str) -> None:
    """EIO/ENOSPC inside simulate/capture/replay: storage_error, no staging or half bundle left,
    and the next request for the same captureKey generates it normally."""
    world.add_tiny_templates(("tiny", "tiny-key"))
    world.config(workers=1, processor=None)
    daemon = world.start(env={"FLOWDROP_FAILPOINTS": spec})
    body = {"requestId": "io-1", "templateId": "tiny", "mode": "telemetry"}
    world.drop("io-1", body=body, state="failed", code="storage_error")
    world.wait_settled()
    hidden = [
        p.name
        for root in (world.runs, world.telemetry)
        for p in root.iterdir()
        if p.name.startswith(".tmp-")
    ]
    assert hidden == [], "staging left behind"
    if not spec.startswith("replay"):
        assert not (world.telemetry / "tiny-key").exists()
    world.drop("io-2", body={**body, "requestId": "io-2"})
    world.wait_settled()
    assert daemon.stop() == 0
    report = world.check(counting=False)
    assert report.bundles == 1


def test_full_telemetry_root_is_storage_error(tmp_path: Path) -> None:
    """Telemetry root on a full tmpfs: capture fails with storage_error, nothing published."""
    with tmpfs(tmp_path / "telemetry", "1m") as mounted:
        if not mounted:
            pytest.skip("mount -t tmpfs not permitted here")
        world = World(tmp_path)
        try:
            world.add_tiny_templates(("tiny", "tiny-key"))
            world.config(workers=1, processor=None)
            ballast = _fill(world.telemetry)
            daemon = world.start()
            body = {"requestId": "tfull", "templateId": "tiny", "mode": "telemetry"}
            world.drop("tfull", body=body, state="failed", code="storage_error")
            world.wait_settled()
            names = sorted(p.name for p in world.telemetry.iterdir())
            assert names == [".locks", "ballast", "escape", "evil-key"], names
            ballast.unlink()
            world.drop("tback", body={**body, "requestId": "tback"})
            world.wait_settled()
            assert daemon.stop() == 0
            assert world.check(counting=False).bundles == 1
        finally:
            world.close()
