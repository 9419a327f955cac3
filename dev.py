#!/usr/bin/env python3
"""Set-up-and-run entry point: needs only Python 3.11 and pip.

    python3 dev.py demo      # the whole simulate -> capture -> replay loop in a temporary spool
    python3 dev.py test      # the whole test suite (pytest args may follow)
    python3 dev.py lint      # ruff (lint + format check) and mypy --strict on src/
    python3 dev.py wheelhouse  # offline bundle: dist/flowdrop-<version>-offline-<py>-<platform>.tar.gz

The first call creates ``.venv`` and installs flowdrop editable with its dev and report extras
(the demo writes a run report, the tests render reports); later calls
reinstall only when pyproject.toml changed.

``wheelhouse`` builds flowdrop's own wheel from a clean copy of this checkout, then lets pip
collect (``pip wheel``) every wheel it and its runtime extras (every optional-dependency group
but ``dev``) need for this interpreter and platform, plus pip itself; adds ``systemd/``, the
operator docs, ``install.sh`` and ``SHA256SUMS``; and packs one tarball (last line printed: its
path). Downloads go through pip's own cache, so a second build is fast and a fresh clone works.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import tomllib
import venv
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / "bin"
STAMP = VENV / ".flowdrop-install-stamp"


def _ensure_env() -> None:
    if not (BIN / "python").exists():
        venv.EnvBuilder(with_pip=True).create(VENV)
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text() == wanted:
        return
    subprocess.run(
        [str(BIN / "python"), "-m", "pip", "install", "--quiet", "-e", f"{ROOT}[dev,report]"],
        check=True,
    )
    STAMP.write_text(wanted)


def _run(argv: list[str]) -> int:
    return subprocess.run(argv, cwd=ROOT).returncode


# --- the offline bundle ----------------------------------------------------------------------

DIST = ROOT / "dist"
# What an operator reads on the server (copied into the bundle's docs/).
OPERATOR_DOCS = (
    "README.md",
    "docs/operations.md",
    "docs/protocol.md",
    "docs/telemetry-capture-guide.md",
    "docs/templates.md",
)
# Never copied into the clean build tree of flowdrop's own wheel.
_BUILD_IGNORE = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis"
)


def project_metadata() -> tuple[str, dict[str, list[str]]]:
    """flowdrop's version and its optional-dependency groups, read from pyproject.toml."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return str(project["version"]), dict(project.get("optional-dependencies", {}))


def runtime_extras(groups: dict[str, list[str]]) -> list[str]:
    """Extras shipped to servers: every optional-dependency group except the developer one."""
    return sorted(name for name in groups if name != "dev")


def bundle_tags() -> tuple[str, str]:
    """(python tag, platform) of this interpreter, as in wheel names: ("cp311", "linux_x86_64")."""
    python_tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    platform = sysconfig.get_platform().replace("-", "_").replace(".", "_")
    return python_tag, platform


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _git_commit() -> str:
    done = subprocess.run(
        ["git", "rev-parse", "--short=12", "HEAD"], cwd=ROOT, capture_output=True, text=True
    )
    dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True)
    commit = done.stdout.strip() if done.returncode == 0 else "unknown"
    return commit + ("-dirty" if dirty.returncode == 0 and dirty.stdout.strip() else "")


def _pip(*args: str) -> None:
    subprocess.run(
        [str(BIN / "python"), "-m", "pip", "--disable-pip-version-check", *args],
        check=True,
    )


def _normalised(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    info.mode = 0o755 if info.isdir() or info.name.endswith(".sh") else 0o644
    return info


def build_wheelhouse(dist: Path = DIST) -> Path:
    """Build the offline bundle into ``dist`` and return the tarball's path."""
    version, groups = project_metadata()
    extras = runtime_extras(groups)
    python_tag, platform = bundle_tags()
    name = f"flowdrop-{version}-offline-{python_tag}-{platform}"
    dist.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="flowdrop-wheelhouse-") as temp:
        source, stage = Path(temp) / "source", Path(temp) / name
        # A clean copy: a stale build/ (setuptools keeps deleted modules there) never leaks in.
        shutil.copytree(ROOT, source, ignore=_BUILD_IGNORE)
        wheels = stage / "wheels"
        wheels.mkdir(parents=True)
        wanted = f"{source}[{','.join(extras)}]" if extras else str(source)
        print(f"wheelhouse: collecting flowdrop {version} with extras {extras or 'none'}")
        _pip("wheel", "--quiet", "--wheel-dir", str(wheels), wanted)
        # pip itself, to bootstrap a venv on a server whose Python lacks ensurepip.
        _pip("wheel", "--quiet", "--no-deps", "--wheel-dir", str(wheels), "pip")
        shutil.copytree(ROOT / "systemd", stage / "systemd")
        for doc in OPERATOR_DOCS:
            target = stage / "docs" / Path(doc).name
            target.parent.mkdir(exist_ok=True)
            # All docs sit side by side in the bundle: the README's docs/ links lose their folder.
            text = (ROOT / doc).read_text(encoding="utf-8")
            target.write_text(text.replace("](docs/", "]("), encoding="utf-8")
        shutil.copy2(ROOT / "packaging" / "install.sh", stage / "install.sh")
        info = {
            "name": "flowdrop",
            "version": version,
            "extras": extras,
            "pythonTag": python_tag,
            "pythonVersion": f"{sys.version_info.major}.{sys.version_info.minor}",
            "platform": platform,
            "commit": _git_commit(),
            "builtAt": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "wheels": sorted(p.name for p in wheels.glob("*.whl")),
        }
        (stage / "BUNDLE.json").write_text(json.dumps(info, indent=2) + "\n")
        files = sorted(p for p in stage.rglob("*") if p.is_file())
        sums = "".join(f"{_sha256(p)}  {p.relative_to(stage).as_posix()}\n" for p in files)
        (stage / "SHA256SUMS").write_text(sums)
        tarball = dist / f"{name}.tar.gz"
        partial = tarball.with_name(f".{tarball.name}.partial")
        with tarfile.open(partial, "w:gz") as archive:
            archive.add(stage, arcname=name, filter=_normalised)
        os.replace(partial, tarball)
    digest = _sha256(tarball)
    tarball.with_name(tarball.name + ".sha256").write_text(f"{digest}  {tarball.name}\n")
    size = tarball.stat().st_size / 1_048_576
    print(f"wheelhouse: {len(info['wheels'])} wheels, {size:.1f} MiB, sha256 {digest}")
    print(tarball)
    return tarball


def main(args: list[str]) -> int:
    if not args or args[0] not in {"demo", "test", "lint", "env", "wheelhouse"}:
        print(__doc__)
        return 2
    _ensure_env()
    command, rest = args[0], args[1:]
    if command == "demo":
        return _run([str(BIN / "flowdrop"), "demo", *rest])
    if command == "test":
        templates = ROOT.parent / "shared" / "flowtime" / "templates"
        if "FLOWTIME_TEMPLATES" not in os.environ and templates.is_dir():
            os.environ["FLOWTIME_TEMPLATES"] = str(templates)
        return _run([str(BIN / "python"), "-m", "pytest", *rest])
    if command == "lint":
        steps = [
            [str(BIN / "ruff"), "check", "src", "tests", "bench", "dev.py"],
            [str(BIN / "ruff"), "format", "--check", "src", "tests", "bench", "dev.py"],
            [str(BIN / "mypy")],
        ]
        return max(_run(step) for step in steps)
    if command == "wheelhouse":
        if rest and (rest[0] != "--out" or len(rest) != 2):
            print("usage: python3 dev.py wheelhouse [--out DIR]   (default: dist/)")
            return 2
        build_wheelhouse(Path(rest[1]).resolve() if rest else DIST)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
