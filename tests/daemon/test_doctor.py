"""doctor: each check's verdict and fix text."""

from __future__ import annotations

from pathlib import Path

from flowdrop.daemon.config import Settings, WatchMode
from flowdrop.daemon.doctor import print_checks, run_checks


def _settings(tmp_path: Path, **kw: object) -> Settings:
    values: dict[str, object] = {
        "spool": tmp_path / "spool",
        "runs_root": tmp_path / "runs",
        "telemetry_root": tmp_path / "telemetry",
        "templates": (tmp_path / "templates",),
    }
    values.update(kw)
    return Settings.model_validate(values)


def test_low_inotify_limits_are_warned_with_the_sysctl_to_run(tmp_path: Path) -> None:
    """max_user_watches below 1024 → a warning naming the sysctl."""
    proc = tmp_path / "inotify"
    proc.mkdir()
    (proc / "max_user_watches").write_text("100\n")
    (proc / "max_user_instances").write_text("128\n")
    (proc / "max_queued_events").write_text("16384\n")
    (tmp_path / "templates").mkdir()
    checks = run_checks(_settings(tmp_path), inotify=proc)
    warning = next(c for c in checks if c.subject == "inotify" and c.level == "warn")
    assert warning.message == "max_user_watches is 100 (want >= 1024)"
    assert warning.fix == "sysctl fs.inotify.max_user_watches=8192"


def test_inotify_on_nfs_is_a_failure_and_missing_templates_too(tmp_path: Path) -> None:
    """watch: inotify on an nfs spool fails; no templates directory fails."""
    mountinfo = f"1 0 0:1 / / rw - ext4 /dev/sda rw\n2 1 0:2 / {tmp_path} rw - nfs4 srv:/x rw\n"
    checks = run_checks(_settings(tmp_path, watch=WatchMode.INOTIFY), mountinfo=mountinfo)
    fails = [c for c in checks if c.level == "fail"]
    assert [c.subject for c in fails] == ["templates", "filesystem"]
    assert fails[1].fix == "set watch: polling (or auto)"
    lines: list[str] = []

    class Out:
        def write(self, text: str) -> None:
            lines.append(text)

    assert print_checks(checks, Out()) == 1  # type: ignore[arg-type]
    assert lines[-1] == "\n2 problem(s), " + lines[-1].split(", ")[1]


def test_unwritable_root_is_a_failure(tmp_path: Path) -> None:
    """A root that exists but is not a directory fails with a fix."""
    (tmp_path / "runs").write_text("not a dir")
    checks = run_checks(_settings(tmp_path))
    fail = next(c for c in checks if c.subject == "runs_root")
    assert (fail.level, fail.message) == ("fail", f"{tmp_path / 'runs'} is not a directory")
