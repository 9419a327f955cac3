"""``flowdrop doctor``: check roots, permissions, inotify limits and filesystem types; say what to fix."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from flowdrop.daemon.config import Settings, WatchMode
from flowdrop.daemon.health import pid_alive, read_health
from flowdrop.daemon.watcher import is_network_fs, mount_for

INOTIFY = Path("/proc/sys/fs/inotify")
MIN_WATCHES = 1024
MIN_INSTANCES = 8


@dataclass(frozen=True)
class Check:
    level: str  # ok | warn | fail
    subject: str
    message: str
    fix: str = ""


def _dir_checks(label: str, path: Path, *, must_write: bool) -> list[Check]:
    checks: list[Check] = []
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not path.exists():
        if os.access(existing, os.W_OK):
            return [Check("ok", label, f"{path} will be created on start")]
        return [
            Check(
                "fail",
                label,
                f"{path} does not exist and {existing} is not writable",
                f"mkdir -p {path} && chown <service user> {path}",
            )
        ]
    if not path.is_dir():
        return [
            Check("fail", label, f"{path} is not a directory", "point the config at a directory")
        ]
    if must_write and not os.access(path, os.W_OK | os.X_OK):
        checks.append(
            Check(
                "fail", label, f"{path} is not writable by uid {os.getuid()}", f"chown/chmod {path}"
            )
        )
    elif not os.access(path, os.R_OK | os.X_OK):
        checks.append(Check("fail", label, f"{path} is not readable", f"chmod u+rx {path}"))
    else:
        checks.append(Check("ok", label, f"{path} ({'writable' if must_write else 'readable'})"))
    mode = path.stat().st_mode
    if mode & stat.S_IWOTH and not mode & stat.S_ISVTX:
        checks.append(
            Check(
                "warn",
                label,
                f"{path} is world-writable without the sticky bit",
                f"chmod o-w {path}",
            )
        )
    return checks


def _inotify_checks(base: Path = INOTIFY) -> list[Check]:
    checks = []
    for name, minimum in (("max_user_watches", MIN_WATCHES), ("max_user_instances", MIN_INSTANCES)):
        try:
            value = int((base / name).read_text().strip())
        except (OSError, ValueError):
            checks.append(
                Check("warn", "inotify", f"cannot read {base / name}; inotify may be unavailable")
            )
            continue
        if value < minimum:
            checks.append(
                Check(
                    "warn",
                    "inotify",
                    f"{name} is {value} (want >= {minimum})",
                    f"sysctl fs.inotify.{name}={minimum * 8}",
                )
            )
        else:
            checks.append(Check("ok", "inotify", f"{name} = {value}"))
    try:
        queued = int((base / "max_queued_events").read_text().strip())
        checks.append(
            Check(
                "ok",
                "inotify",
                f"max_queued_events = {queued} (bursts beyond it overflow; flowdrop rescans)",
            )
        )
    except (OSError, ValueError):
        pass
    return checks


def _fs_checks(settings: Settings, mountinfo: str | None = None) -> list[Check]:
    checks = []
    mounts = {}
    for label, path in (("spool", settings.spool), ("runs_root", settings.runs_root)):
        probe = path
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        mount = mount_for(probe, mountinfo)
        mounts[label] = mount
        if mount is None:
            checks.append(Check("warn", "filesystem", f"cannot tell the filesystem of {path}"))
            continue
        if label == "spool" and is_network_fs(mount.fs_type):
            if settings.watch is WatchMode.INOTIFY:
                checks.append(
                    Check(
                        "fail",
                        "filesystem",
                        f"spool is on {mount.fs_type}: inotify does not see other clients' writes",
                        "set watch: polling (or auto)",
                    )
                )
            else:
                checks.append(
                    Check(
                        "warn",
                        "filesystem",
                        f"spool is on {mount.fs_type}: polling every {settings.poll_interval:g} s; "
                        "new files may appear up to 60 s late (attribute cache)",
                        "mount with lookupcache=positive or actimeo=1 for faster pickup",
                    )
                )
        else:
            checks.append(
                Check("ok", "filesystem", f"{label} on {mount.fs_type} ({mount.mount_point})")
            )
    return checks


def _health_checks(settings: Settings) -> list[Check]:
    health = read_health(settings.health_path)
    if health is None:
        return [Check("warn", "daemon", "no health.json yet: the daemon has not run on this spool")]
    pid = health.get("pid")
    alive = isinstance(pid, int) and pid_alive(pid)
    if not alive:
        return [
            Check(
                "warn",
                "daemon",
                f"last instance {health.get('instance')} (pid {pid}) is not running",
            )
        ]
    if not health.get("healthy"):
        return [
            Check(
                "fail",
                "daemon",
                f"instance {health.get('instance')} reports unhealthy "
                f"(observerAlive={health.get('observerAlive')}, lastScanAgeSeconds={health.get('lastScanAgeSeconds')})",
                "check the journal (journalctl -u flowdrop); restart the service",
            )
        ]
    return [Check("ok", "daemon", f"instance {health.get('instance')} (pid {pid}) healthy")]


def run_checks(
    settings: Settings, *, mountinfo: str | None = None, inotify: Path = INOTIFY
) -> list[Check]:
    checks: list[Check] = []
    checks += _dir_checks("spool", settings.spool, must_write=True)
    checks += _dir_checks("runs_root", settings.runs_root, must_write=True)
    checks += _dir_checks("telemetry_root", settings.telemetry_root, must_write=True)
    present = [t for t in settings.templates if t.is_dir()]
    for directory in settings.templates:
        if directory.is_dir():
            count = len(list(directory.glob("*.yaml"))) + len(list(directory.glob("*.yml")))
            checks.append(Check("ok", "templates", f"{directory}: {count} template file(s)"))
    if not present:
        checks.append(
            Check(
                "fail",
                "templates",
                "no templates directory exists",
                "create one and list it under templates:",
            )
        )
    checks += _inotify_checks(inotify)
    checks += _fs_checks(settings, mountinfo)
    checks += _health_checks(settings)
    return checks


def print_checks(checks: list[Check], out: TextIO) -> int:
    marks = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL"}
    for check in checks:
        out.write(f"{marks[check.level]}  {check.subject:<14} {check.message}\n")
        if check.fix:
            out.write(f"      {'':<14} fix: {check.fix}\n")
    failures = sum(c.level == "fail" for c in checks)
    warnings = sum(c.level == "warn" for c in checks)
    out.write(f"\n{failures} problem(s), {warnings} warning(s)\n")
    return 1 if failures else 0
