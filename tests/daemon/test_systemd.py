"""The systemd unit is accepted by ``systemd-analyze verify`` and keeps its hardening."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from flowdrop.daemon.config import load_settings

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "systemd" / "flowdrop.service"
ANALYZE = shutil.which("systemd-analyze") or (
    "/usr/bin/systemd-analyze" if Path("/usr/bin/systemd-analyze").exists() else None
)


def _directives(text: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        match = re.match(r"^([A-Za-z]+)=(.*)$", line.strip())
        if match:
            found.setdefault(match.group(1), []).append(match.group(2))
    return found


PRUNE_SERVICE = ROOT / "systemd" / "flowdrop-prune.service"
PRUNE_TIMER = ROOT / "systemd" / "flowdrop-prune.timer"


def _local_unit(tmp_path: Path, unit: Path = UNIT) -> Path:
    flowdrop = Path(sys.executable).parent / "flowdrop"
    text = unit.read_text().replace("/opt/flowdrop/bin/flowdrop", str(flowdrop))
    local = tmp_path / unit.name
    local.write_text(text)
    return local


@pytest.fixture
def analyze() -> str:
    if ANALYZE is None:
        if os.environ.get("CI"):
            pytest.fail("systemd-analyze is required in CI")
        pytest.skip("systemd-analyze not installed")
    return ANALYZE


def test_unit_passes_systemd_analyze_verify(tmp_path: Path, analyze: str) -> None:
    """`systemd-analyze verify` accepts the unit (ExecStart pointed at this venv's flowdrop)."""
    done = subprocess.run(
        [analyze, "verify", str(_local_unit(tmp_path))], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "flowdrop.service" not in done.stderr, done.stderr


def test_unit_security_exposure_is_low(tmp_path: Path, analyze: str) -> None:
    """`systemd-analyze security --offline` rates the unit's exposure at most 2.0 (OK)."""
    done = subprocess.run(
        [analyze, "security", "--offline=yes", "--no-pager", str(_local_unit(tmp_path))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    match = re.search(r"Overall exposure level for flowdrop.service: ([0-9.]+)", done.stdout)
    if match is None:
        pytest.skip(f"this systemd-analyze has no offline security check: {done.stderr[:200]}")
    assert float(match.group(1)) <= 2.0


def test_unit_contract_with_the_daemon() -> None:
    """Type=notify, watchdog, restart, reload by SIGHUP, stop timeout above drain_timeout."""
    unit = _directives(UNIT.read_text())
    assert unit["Type"] == ["notify"]
    assert unit["Restart"] == ["on-failure"]
    assert unit["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert "WatchdogSec" in unit
    assert unit["User"] == ["flowdrop"]
    for option in (
        "ProtectSystem",
        "ProtectHome",
        "PrivateTmp",
        "NoNewPrivileges",
        "PrivateDevices",
        "ProtectKernelTunables",
        "ProtectKernelModules",
        "MemoryDenyWriteExecute",
    ):
        assert option in unit, option
    assert unit["RestrictAddressFamilies"] == ["AF_UNIX"]
    assert unit["SystemCallFilter"][0] == "@system-service"
    assert unit["CapabilityBoundingSet"] == [""]
    example = ROOT / "systemd" / "flowdrop.yaml"
    settings = load_settings(example, env={})
    stop = int(unit["TimeoutStopSec"][0].removesuffix("s"))
    assert stop > settings.drain_timeout
    writable = unit["ReadWritePaths"][0].split()
    for path in (settings.spool, settings.runs_root, settings.telemetry_root):
        assert any(path == Path(w) or Path(w) in path.parents for w in writable), path
    assert yaml.safe_load(example.read_text())["watch"] == "auto"


def test_tmpfiles_entry_creates_every_configured_root() -> None:
    """The tmpfiles.d entry creates the spool and roots of the example config."""
    lines = (ROOT / "systemd" / "flowdrop.tmpfiles.conf").read_text().splitlines()
    created = {line.split()[1] for line in lines if line.startswith("d ")}
    settings = load_settings(ROOT / "systemd" / "flowdrop.yaml", env={})
    for path in (
        settings.spool,
        settings.spool / "inbox",
        settings.runs_root,
        settings.telemetry_root,
    ):
        assert str(path) in created


def test_tmpfiles_entry_ages_nothing_behind_flowdrops_back() -> None:
    """No Age on any line: systemd-tmpfiles --clean knows nothing of runs in flight or bundles."""
    lines = (ROOT / "systemd" / "flowdrop.tmpfiles.conf").read_text().splitlines()
    entries = [line.split() for line in lines if line.strip() and not line.startswith("#")]
    assert entries
    assert [fields[1] for fields in entries if fields[5:] != ["-"]] == []


def test_prune_units_pass_systemd_analyze_verify(tmp_path: Path, analyze: str) -> None:
    """flowdrop-prune.service and its daily timer are accepted by `systemd-analyze verify`."""
    service = _local_unit(tmp_path, PRUNE_SERVICE)
    timer = _local_unit(tmp_path, PRUNE_TIMER)
    done = subprocess.run(
        [analyze, "verify", str(service), str(timer)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "flowdrop-prune" not in done.stderr, done.stderr


def test_prune_unit_runs_prune_in_the_daemons_sandbox() -> None:
    """Same user, same writable paths and sandbox as the daemon; daily, catching up missed runs."""
    daemon, service = _directives(UNIT.read_text()), _directives(PRUNE_SERVICE.read_text())
    assert service["Type"] == ["oneshot"]
    assert service["ExecStart"] == [
        "/opt/flowdrop/bin/flowdrop prune --config /etc/flowdrop/flowdrop.yaml"
    ]
    for key in ("User", "Group", "ReadWritePaths", "ProtectSystem", "PrivateNetwork"):
        assert service[key] == daemon[key], key
    assert service["SystemCallFilter"] == daemon["SystemCallFilter"]
    timer = _directives(PRUNE_TIMER.read_text())
    assert timer["OnCalendar"] == ["daily"]
    assert timer["Persistent"] == ["true"]


def test_example_config_sets_the_retention_ages() -> None:
    settings = load_settings(ROOT / "systemd" / "flowdrop.yaml", env={})
    day = 86_400
    assert (settings.retain_done, settings.retain_outbox) == (30 * day, 30 * day)
    assert (settings.retain_quarantine, settings.retain_runs) == (90 * day, 30 * day)
