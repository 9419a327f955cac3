"""The command line: submit --wait, status, validate, simulate, doctor, schema, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from flowdrop.daemon.cli import main, parse_param
from flowdrop.daemon.testing import DaemonProcess, write_config

CLI = [sys.executable, "-m", "flowdrop.daemon.cli"]


def _run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    base = tmp_path_factory.mktemp("cli")
    config = write_config(base, stale_after=0)
    daemon = DaemonProcess(config)
    daemon.wait_ready()
    yield config
    assert daemon.stop() == 0


def test_param_values_are_json_when_they_parse() -> None:
    """--param k=v: numbers, booleans and arrays as JSON, anything else as a string."""
    assert parse_param("bins=12") == ("bins", 12)
    assert parse_param("rates=[1, 2.5]") == ("rates", [1, 2.5])
    assert parse_param("flag=true") == ("flag", True)
    assert parse_param("name=north") == ("name", "north")
    assert parse_param("empty=") == ("empty", "")
    with pytest.raises(ValueError, match="--param expects k=v"):
        parse_param("novalue")


def test_submit_wait_shows_progress_and_the_result(served: Path, tmp_path: Path) -> None:
    """submit --wait drops atomically, prints phases, ends with the run; exit 0."""
    request = tmp_path / "cli-ok.json"
    request.write_text(
        json.dumps({"templateId": "t", "mode": "simulation", "parameters": {"sleep": 0.2}})
    )
    done = _run("submit", str(request), "--config", str(served), "--wait", "--timeout", "20")
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "submitted cli-ok.json (requestId cli-ok)"
    assert any(line.split()[0] == "simulating" and "Simulating…" in line for line in lines)
    assert any(line.startswith("  succeeded") for line in lines)
    assert "run:     run_cli-ok  template t 1.0.0" in lines


def test_submit_wait_on_a_rejected_request_exits_1_with_code_and_message(
    served: Path, tmp_path: Path
) -> None:
    """A rejected request: exit 1, the error code and message printed."""
    request = tmp_path / "cli-bad.json"
    request.write_text('{"templateId": "t"}')
    done = _run("submit", str(request), "--config", str(served), "--wait", "--timeout", "20")
    assert done.returncode == 1
    assert "error: invalid_request: Invalid request: mode: Field required." in done.stdout


def test_submit_wait_reports_a_duplicate_with_the_first_result(
    served: Path, tmp_path: Path
) -> None:
    """Submitting identical content twice: the second reports the first result, no rerun."""
    request = tmp_path / "cli-dup.json"
    request.write_text(json.dumps({"templateId": "t", "mode": "simulation"}))
    assert _run("submit", str(request), "--config", str(served), "--wait").returncode == 0
    again = _run("submit", str(request), "--config", str(served), "--wait", "--timeout", "20")
    assert again.returncode == 0, again.stdout
    assert "duplicate   requestId 'cli-dup' already ended with this content" in again.stdout


def test_submit_wait_reports_a_conflict(served: Path, tmp_path: Path) -> None:
    """Same requestId with other content: request_conflict, exit 1."""
    first = tmp_path / "cli-conf.json"
    first.write_text(json.dumps({"templateId": "t", "mode": "simulation"}))
    assert _run("submit", str(first), "--config", str(served), "--wait").returncode == 0
    first.write_text(json.dumps({"templateId": "t", "mode": "simulation", "parameters": {"x": 1}}))
    again = _run("submit", str(first), "--config", str(served), "--wait", "--timeout", "20")
    assert again.returncode == 1
    assert "error: request_conflict: requestId 'cli-conf' was already used" in again.stdout


def test_status_lists_requests_and_shows_one(served: Path, tmp_path: Path) -> None:
    """status prints a table; status ID --json prints status and result."""
    request = tmp_path / "cli-status.json"
    request.write_text(json.dumps({"templateId": "t", "mode": "simulation"}))
    assert _run("submit", str(request), "--config", str(served), "--wait").returncode == 0
    table = _run("status", "--config", str(served))
    assert table.returncode == 0
    header = table.stdout.splitlines()[0].split()
    assert header == ["REQUEST", "STATE", "PHASE", "UPDATED", "MESSAGE"]
    assert any(line.startswith("cli-status ") for line in table.stdout.splitlines())
    one = _run("status", "cli-status", "--json", "--config", str(served))
    payload = json.loads(one.stdout)
    assert payload["status"]["state"] == "succeeded"
    assert payload["result"]["run"]["runId"] == "run_cli-status"
    missing = _run("status", "nope", "--config", str(served))
    assert missing.returncode == 1
    assert missing.stdout == "error: not_found: no status for requestId 'nope'\n"


def test_validate_and_simulate_real_template(flowtime_templates: Path, tmp_path: Path) -> None:
    """validate prints id and version; simulate writes the run dir and prints the run id."""
    template = flowtime_templates / "manufacturing-line.yaml"
    done = _run("validate", str(template))
    assert done.returncode == 0
    assert done.stdout.startswith("ok: manufacturing-line ")
    out = tmp_path / "run"
    sim = _run("simulate", str(template), "--param", "bins=6", "--seed", "7", "--out", str(out))
    assert sim.returncode == 0, sim.stderr
    assert sim.stdout.startswith("run run_manufacturing-line_")
    assert (out / "run.json").exists()


def test_errors_are_code_and_message_never_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A missing template: exit 1, 'error: template_not_found: …'."""
    assert main(["validate", str(tmp_path / "none.yaml")]) == 1
    err = capsys.readouterr().err
    assert err == "error: template_not_found: Template file 'none.yaml' was not found.\n"


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    """Unknown commands, missing arguments and --detach without --pidfile exit 2."""
    with pytest.raises(SystemExit) as caught:
        main(["frobnicate"])
    assert caught.value.code == 2
    assert "usage_error: argument command: invalid choice: 'frobnicate'" in capsys.readouterr().err
    assert main(["serve", "--detach"]) == 2
    assert capsys.readouterr().err == "usage_error: --detach needs --pidfile P\n"
    with pytest.raises(SystemExit) as caught:
        main(["simulate", "t.yaml"])
    assert caught.value.code == 2


def test_bad_config_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """status with an invalid config: exit 2 and the per-key message."""
    config = tmp_path / "c.yaml"
    config.write_text("workers: many\n")
    assert main(["status", "--config", str(config)]) == 2
    assert "  - workers: Input should be a valid integer" in capsys.readouterr().err


def test_doctor_reports_and_says_what_to_fix(tmp_path: Path) -> None:
    """doctor checks roots, inotify limits and filesystems; exit 0 when nothing fails."""
    config = write_config(tmp_path)
    (tmp_path / "templates").mkdir()
    done = _run("doctor", "--config", str(config))
    assert done.returncode == 0, done.stdout
    assert "inotify" in done.stdout and "max_user_watches" in done.stdout
    assert "filesystem" in done.stdout
    assert "0 problem(s)" in done.stdout
