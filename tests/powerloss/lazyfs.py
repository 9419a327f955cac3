"""LazyFS as a test instrument: build it, mount it, cut the power, crash it, tell it died.

LazyFS (``../shared/tools/lazyfs``, see its USAGE.md) is a FUSE filesystem with its own page
cache: file data stays in that cache until ``fsync``/``fdatasync``; ``lazyfs::clear-cache``
drops every un-synced byte (a power cut) and ``lazyfs::crash::...`` kills LazyFS itself just
before or after a matching operation. Metadata (create, rename, unlink, mkdir) reaches the
backing directory at once, so a rename that was not followed by a directory fsync survives here
although it might not on ext4: directory fsyncs are checked by reading the code and by the
failpoint suite, not here.

It runs single-threaded in the foreground (``-f -s``) as our child process; multi-threaded it
segfaulted under load. A LazyFS that dies when nobody asked it to (process gone, mount gone,
``ENOTCONN``) is an *infrastructure* failure: :class:`LazyFSDied` carries its log and is never
mistaken for a flowdrop verdict (:meth:`LazyFS.guard`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO.parent / "shared" / "tools" / "lazyfs" / "build.sh"
BUILD_DIR = REPO / "build" / "lazyfs"  # git-ignored; shared/ is read-only in CI

CONFIG = """\
[faults]
fifo_path="{fifo}"
fifo_path_completed="{done}"
[cache]
apply_eviction=false
[cache.simple]
custom_size="512mb"
blocks_per_page=1
[filesystem]
log_all_operations=false
logfile=""
"""


class LazyFSDied(RuntimeError):
    """LazyFS died or its mount vanished without being asked to: the test infrastructure
    failed, not flowdrop. The message carries the reason and the tail of LazyFS's log."""


class LazyFSUnavailable(RuntimeError):
    """LazyFS could not be built or mounted here (no root, no /dev/fuse, no fusermount3)."""


def build() -> Path:
    """Build LazyFS with the shared script (idempotent) into the repo's ignored build dir."""
    if not BUILD_SCRIPT.is_file():
        msg = f"{BUILD_SCRIPT} not found (../shared must sit beside the repository)"
        raise LazyFSUnavailable(msg)
    env = {**os.environ, "LAZYFS_BUILD_DIR": str(BUILD_DIR)}
    proc = subprocess.run(
        ["bash", str(BUILD_SCRIPT)], capture_output=True, text=True, env=env, check=False
    )
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines or not Path(lines[-1]).is_file():
        msg = f"LazyFS build failed ({proc.returncode}): {proc.stderr[-3000:]}"
        raise LazyFSUnavailable(msg)
    return Path(lines[-1])


def unavailable_reason() -> str | None:
    """Why this host cannot run LazyFS at all, or None."""
    if os.geteuid() != 0:
        return "not root (LazyFS needs /dev/fuse and may install Debian packages)"
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse is missing"
    return None


def _mounted(path: Path) -> bool:
    target = os.fsencode(os.path.realpath(path))
    with open("/proc/self/mountinfo", "rb") as handle:
        for line in handle:
            fields = line.split()
            if len(fields) > 4 and fields[4].replace(b"\\040", b" ") == target:
                return True
    return False


def _config_path(base: Path) -> Path:
    """Where the config goes: LazyFS takes a ``--config-path`` value containing "-o" (any case,
    e.g. pytest's ``/tmp/pytest-of-root/``) for a FUSE option and falls back to
    ``config/default.toml``; such a path gets a private directory under /tmp instead."""
    if "-o" not in str(base).lower():
        return base / "lazyfs.toml"
    return Path(tempfile.mkdtemp(prefix="flowdrop_lazyfs_", dir="/tmp")) / "lazyfs.toml"


class LazyFS:
    """One LazyFS over ``base/root`` mounted at ``base/mnt``; fifos, config and log in ``base``."""

    def __init__(self, binary: Path, base: Path) -> None:
        self.binary = binary
        self.base = base
        self.root = base / "root"  # what survives: the "disk"
        self.mnt = base / "mnt"  # where the program under test works
        self.fifo = base / "faults.fifo"
        self.done_fifo = base / "faults-done.fifo"
        self.config = _config_path(base)
        self.log_path = base / "lazyfs.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.expect_death = False  # a crash fault is armed: its SIGKILL is not a failure
        self.mounts = 0
        self.crashes = 0
        self.cuts = 0
        self._cmd_fd: int | None = None
        self._done_fd: int | None = None
        self._log_handle: contextlib.ExitStack | None = None
        for path in (self.root, self.mnt):
            path.mkdir(parents=True, exist_ok=True)
        for fifo in (self.fifo, self.done_fifo):
            if not fifo.exists():
                os.mkfifo(fifo)
        self.config.write_text(CONFIG.format(fifo=self.fifo, done=self.done_fifo))

    # --- lifecycle ---------------------------------------------------------------------------

    def mount(self, timeout: float = 20.0) -> None:
        assert self.proc is None, "already mounted"
        # Our ends of the fifos first. The command fifo is opened read-write so LazyFS's reader
        # never sees EOF (its loop would spin); the completion fifo non-blocking for reading so
        # LazyFS's blocking open for writing returns.
        self._cmd_fd = os.open(self.fifo, os.O_RDWR | os.O_CLOEXEC)
        self._done_fd = os.open(self.done_fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed by the Popen owner below
        log.write(f"\n===== mount #{self.mounts + 1} =====\n".encode())
        log.flush()
        self.proc = subprocess.Popen(
            [
                str(self.binary),
                str(self.mnt),
                "--config-path",
                str(self.config),
                "-o",
                "allow_other",
                "-o",
                "modules=subdir",
                "-o",
                f"subdir={self.root}",
                "-f",
                "-s",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        self.expect_death = False
        deadline = time.monotonic() + timeout
        while not _mounted(self.mnt):
            if self.proc.poll() is not None:
                raise LazyFSDied(self._report("exited while mounting"))
            if time.monotonic() > deadline:
                raise LazyFSDied(self._report(f"not mounted after {timeout:g} s"))
            time.sleep(0.02)
        self.mounts += 1
        self.assert_alive("right after mounting")

    def unmount(self) -> None:
        """Unmount and reap LazyFS, whatever state it is in (also a dead mount). Idempotent."""
        if _mounted(self.mnt):
            done = subprocess.run(["fusermount3", "-u", str(self.mnt)], capture_output=True)
            if done.returncode != 0 and _mounted(self.mnt):
                subprocess.run(["fusermount3", "-u", "-z", str(self.mnt)], capture_output=True)
        if self.proc is not None:
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None
        for name in ("_cmd_fd", "_done_fd"):
            fd = getattr(self, name)
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
                setattr(self, name, None)

    def close(self) -> None:
        """Unmount for good and remove a private config directory (see :func:`_config_path`)."""
        self.unmount()
        if self.config.parent != self.base:
            shutil.rmtree(self.config.parent, ignore_errors=True)

    def remount(self) -> None:
        """What the machine finds when the power comes back: only what reached ``root``."""
        self.unmount()
        self.mount()

    # --- health ------------------------------------------------------------------------------

    def dead_reason(self) -> str | None:
        if self.proc is None:
            return "not mounted"
        code = self.proc.poll()
        if code is not None:
            return f"the LazyFS process exited with {code}"
        if not _mounted(self.mnt):
            return "the mount is gone"
        try:
            os.stat(self.mnt)
        except OSError as exc:
            return f"the mount answers {errno.errorcode.get(exc.errno or 0, exc.errno)}"
        return None

    def assert_alive(self, when: str) -> None:
        reason = self.dead_reason()
        if reason is not None:
            raise LazyFSDied(self._report(f"{reason} ({when})"))

    @contextlib.contextmanager
    def guard(self, when: str) -> Iterator[None]:
        """Run a flowdrop check; if LazyFS died meanwhile, the verdict is an infrastructure one.

        A check that failed *because* the filesystem went away (``ENOTCONN``, empty listings of
        a vanished mount) must not read as a flowdrop defect, and a check that passed on a dead
        mount must not pass.
        """
        self.assert_alive(f"before {when}")
        try:
            yield
        except LazyFSDied:
            raise
        except BaseException as exc:
            reason = self.dead_reason()
            if reason is None and isinstance(exc, OSError) and exc.errno == errno.ENOTCONN:
                reason = "ENOTCONN"
            if reason is not None:
                raise LazyFSDied(self._report(f"{reason} during {when}")) from exc
            raise
        self.assert_alive(f"after {when}")

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    def current_log(self) -> str:
        """The log of the current (or last) mount only."""
        return self.log_tail(200_000).rsplit("===== mount", 1)[-1]

    def _report(self, what: str) -> str:
        return (
            f"LazyFS infrastructure failure, not a flowdrop verdict: {what}.\n"
            f"--- LazyFS log ({self.log_path}) ---\n{self.log_tail()}"
        )

    # --- faults ------------------------------------------------------------------------------

    def _command(self, line: str) -> None:
        assert self._cmd_fd is not None, "not mounted"
        self.assert_alive(f"before sending {line!r}")
        os.write(self._cmd_fd, (line + "\n").encode())

    def clear_cache(self, timeout: float = 20.0) -> None:
        """The power cut: every byte not fsynced is gone. Returns once LazyFS confirms."""
        assert self._done_fd is not None
        self._command("lazyfs::clear-cache")
        deadline = time.monotonic() + timeout
        seen = b""
        while b"finished::clear-cache" not in seen:
            left = deadline - time.monotonic()
            if left <= 0:
                raise LazyFSDied(self._report(f"clear-cache not confirmed in {timeout:g} s"))
            ready, _, _ = select.select([self._done_fd], [], [], min(left, 0.2))
            if ready:
                seen += os.read(self._done_fd, 4096)
            self.assert_alive("waiting for clear-cache")
        self.cuts += 1

    def power_cut(self) -> None:
        """clear-cache, then unmount and mount again (drops the kernel's FUSE caches too)."""
        self.clear_cache()
        self.remount()

    def arm_crash(self, op: str, timing: str, from_rgx: str, to_rgx: str | None = None) -> None:
        """Kill LazyFS just ``timing`` the first ``op`` on a path matching the regexes.

        (LazyFS matches ``.*REGEX.*`` with std::regex; for a rename only ``to_rgx`` is really
        checked, so ``from_rgx`` must not match the literal "none".)
        """
        command = f"lazyfs::crash::timing={timing}::op={op}::from_rgx={from_rgx}"
        if to_rgx is not None:
            command += f"::to_rgx={to_rgx}"
        self._command(command)
        deadline = time.monotonic() + 10
        while "received: VALID crash fault" not in self.current_log():
            if "INVALID crash fault" in self.current_log():
                raise AssertionError(f"LazyFS refused the fault {command!r}: {self.log_tail()}")
            if time.monotonic() > deadline:
                raise LazyFSDied(self._report(f"fault {command!r} not acknowledged"))
            time.sleep(0.02)
        self.expect_death = True

    def wait_crashed(self, timeout: float) -> bool:
        """True once an armed crash fault fired (LazyFS logged it and was SIGKILLed)."""
        assert self.proc is not None and self.expect_death
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return False
        current = self.current_log()
        if code != -9 or "Triggered fault condition" not in current:
            raise LazyFSDied(self._report(f"exited with {code} but no armed fault fired"))
        self.crashes += 1
        return True
