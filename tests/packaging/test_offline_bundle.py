"""The offline bundle: `python3 dev.py wheelhouse` builds it, `install.sh` installs it with no index.

Real, not mocked: the bundle is built with pip (downloads go through pip's own cache, so only a
fresh machine pays for them), unpacked, and installed into temporary prefixes by its own
install.sh with ``PIP_NO_INDEX=1`` and ``PIP_CONFIG_FILE=/dev/null``; the installed `flowdrop
demo` then runs the whole loop. Marked ``bundle`` (deselect with ``-m 'not bundle'``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.bundle, pytest.mark.timeout(600)]


@dataclass(frozen=True)
class Bundle:
    tarball: Path
    directory: Path  # the unpacked bundle (holds install.sh)
    build_output: str

    def copy(self, destination: Path) -> Path:
        """A private copy of the unpacked bundle, for tests that damage or change it."""
        target = destination / self.directory.name
        shutil.copytree(self.directory, target, symlinks=True)
        return target


def _offline_env(tmp: Path) -> dict[str, str]:
    """No index reachable: no PIP_* of this machine, no pip.conf, PIP_NO_INDEX=1."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "VIRTUAL_ENV"))}
    env.update(
        PIP_NO_INDEX="1",
        PIP_CONFIG_FILE=os.devnull,
        FLOWDROP_HOME=str(tmp / "home"),
        PATH=os.pathsep.join(
            p for p in env.get("PATH", "").split(os.pathsep) if not p.startswith(sys.prefix)
        ),
    )
    env.pop("FLOWDROP_CONFIG", None)
    return env


def install(
    bundle_dir: Path, prefix: Path, *args: str, tmp: Path
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(bundle_dir / "install.sh"), "--prefix", str(prefix), *args],
        capture_output=True,
        text=True,
        env=_offline_env(tmp),
        timeout=300,
    )


def _distribution(requirement: str) -> str:
    """The distribution name a requirement like ``plotly>=5[extra]`` starts with."""
    name = re.match(r"[A-Za-z0-9._-]+", requirement)
    assert name is not None, requirement
    return name.group(0)


def _requirement_name(requirement: str) -> str:
    return re.sub(r"[-_.]+", "_", _distribution(requirement)).lower()


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    out = tmp_path_factory.mktemp("dist")
    done = subprocess.run(
        [sys.executable, str(ROOT / "dev.py"), "wheelhouse", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=480,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    tarball = Path(done.stdout.strip().splitlines()[-1])
    unpacked = tmp_path_factory.mktemp("unpacked")
    with tarfile.open(tarball) as archive:
        archive.extractall(unpacked, filter="data")
    (directory,) = unpacked.iterdir()
    return Bundle(tarball, directory, done.stdout)


@pytest.fixture(scope="module")
def installed(bundle: Bundle, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundle installed once with --no-systemd into a fresh prefix, index unreachable."""
    tmp = tmp_path_factory.mktemp("install")
    prefix = tmp / "opt" / "flowdrop"
    done = install(bundle.directory, prefix, "--no-systemd", tmp=tmp)
    assert done.returncode == 0, done.stdout + done.stderr
    (prefix / "install.log").write_text(done.stdout)
    return prefix


def test_wheelhouse_prints_the_bundle_path_last_and_names_version_python_platform(
    bundle: Bundle,
) -> None:
    """dist/flowdrop-<version>-offline-<python tag>-<platform>.tar.gz, with a .sha256 beside it."""
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    assert re.fullmatch(
        rf"flowdrop-{re.escape(version)}-offline-{tag}-[a-z0-9_]+\.tar\.gz", bundle.tarball.name
    )
    digest = hashlib.sha256(bundle.tarball.read_bytes()).hexdigest()
    sidecar = bundle.tarball.with_name(bundle.tarball.name + ".sha256").read_text()
    assert sidecar == f"{digest}  {bundle.tarball.name}\n"
    assert bundle.directory.name == bundle.tarball.name.removesuffix(".tar.gz")


def test_bundle_holds_every_wheel_runtime_extras_systemd_docs_and_install_sh(
    bundle: Bundle,
) -> None:
    """flowdrop's wheel, each runtime and runtime-extra requirement, pip; unit files; docs."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = sorted(name for name in project.get("optional-dependencies", {}) if name != "dev")
    wanted = list(project["dependencies"])
    for extra in extras:
        wanted += project["optional-dependencies"][extra]
    wheels = {
        _requirement_name(p.name.split("-")[0]) for p in (bundle.directory / "wheels").glob("*.whl")
    }
    missing = [r for r in wanted if _requirement_name(r) not in wheels]
    assert missing == []
    assert {"flowdrop", "pip"} <= wheels
    info = json.loads((bundle.directory / "BUNDLE.json").read_text())
    assert info["extras"] == extras
    assert info["version"] == project["version"]
    for name in (
        "flowdrop.service",
        "flowdrop-prune.service",
        "flowdrop-prune.timer",
        "flowdrop.sysusers.conf",
        "flowdrop.tmpfiles.conf",
    ):
        assert (bundle.directory / "systemd" / name).is_file()
    assert (bundle.directory / "systemd" / "flowdrop.yaml").is_file()
    assert (bundle.directory / "docs" / "operations.md").is_file()
    readme = (bundle.directory / "docs" / "README.md").read_text()
    assert "](docs/" not in readme and "](operations.md)" in readme  # links to its siblings
    assert os.access(bundle.directory / "install.sh", os.X_OK)
    # The wheel is built from this checkout: it holds the current sources, nothing stale.
    (own,) = (bundle.directory / "wheels").glob("flowdrop-*.whl")
    with zipfile.ZipFile(own) as wheel:
        names = set(wheel.namelist())
    sources = {
        p.relative_to(ROOT / "src").as_posix() for p in (ROOT / "src" / "flowdrop").rglob("*.py")
    }
    assert {n for n in names if n.endswith(".py")} == sources


def test_sha256sums_lists_every_file_of_the_bundle(bundle: Bundle) -> None:
    """`sha256sum -c SHA256SUMS` passes and every other file of the bundle is listed."""
    done = subprocess.run(
        ["sha256sum", "--check", "--strict", "SHA256SUMS"],
        cwd=bundle.directory,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = (bundle.directory / "SHA256SUMS").read_text().splitlines()
    listed = {line.split("  ", 1)[1] for line in lines}
    files = {
        p.relative_to(bundle.directory).as_posix()
        for p in bundle.directory.rglob("*")
        if p.is_file() and p.name != "SHA256SUMS"
    }
    assert listed == files


def test_installed_with_no_index_the_demo_runs(installed: Path, tmp_path: Path) -> None:
    """install.sh --no-systemd with PIP_NO_INDEX=1, PIP_CONFIG_FILE=/dev/null; `flowdrop demo`."""
    log = (installed / "install.log").read_text()
    assert "installing flowdrop" in log
    assert "running flowdrop doctor" in log
    assert f"{installed}/bin/flowdrop demo" in log  # what to do next
    done = subprocess.run(
        [str(installed / "bin" / "flowdrop"), "demo"],
        capture_output=True,
        text=True,
        env=_offline_env(tmp_path),
        cwd=tmp_path,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "every outcome as expected." in done.stdout
    # The venv runs the installed copy, not this checkout.
    where = subprocess.run(
        [str(installed / "bin" / "python"), "-c", "import flowdrop; print(flowdrop.__file__)"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert where.stdout.startswith(str(installed)), where.stdout


def test_installed_environment_has_the_runtime_extras(installed: Path) -> None:
    """Every requirement of the runtime extras (e.g. `report`) is installed; `pip check` agrees."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = [
        req
        for name, reqs in project.get("optional-dependencies", {}).items()
        if name != "dev"
        for req in reqs
    ]
    names = [_distribution(req) for req in wanted]
    script = "import sys\nfrom importlib.metadata import version\nfor n in sys.argv[1:]: version(n)"
    done = subprocess.run(
        [str(installed / "bin" / "python"), "-c", script, *names], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    check = subprocess.run(
        [str(installed / "bin" / "python"), "-m", "pip", "check"],
        capture_output=True,
        text=True,
        env={**os.environ, "PIP_CONFIG_FILE": os.devnull},
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_second_run_reinstalls_in_place(bundle: Bundle, installed: Path, tmp_path: Path) -> None:
    """The same bundle again: repaired in place, no rollback copy, still working."""
    done = install(bundle.directory, installed, "--no-systemd", tmp=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "already installed" in done.stdout
    assert not installed.with_name(installed.name + ".previous").exists()
    version = subprocess.run(
        [str(installed / "bin" / "flowdrop"), "--version"], capture_output=True, text=True
    )
    assert version.stdout.startswith("flowdrop ")


def test_another_bundle_upgrades_in_place_and_keeps_the_previous_prefix(
    bundle: Bundle, tmp_path: Path
) -> None:
    """A different bundle over an installed prefix: <prefix>.previous is the rollback."""
    prefix = tmp_path / "flowdrop"
    first = install(bundle.directory, prefix, "--no-systemd", tmp=tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    newer = bundle.copy(tmp_path / "newer")
    info = json.loads((newer / "BUNDLE.json").read_text())
    info["commit"] = "another-build"
    (newer / "BUNDLE.json").write_text(json.dumps(info, indent=2) + "\n")
    sums = subprocess.run(
        "sha256sum $(find . -type f ! -name SHA256SUMS | sed 's|^./||' | sort) > SHA256SUMS",
        shell=True,
        cwd=newer,
        check=True,
    )
    assert sums.returncode == 0
    second = install(newer, prefix, "--no-systemd", tmp=tmp_path)
    assert second.returncode == 0, second.stdout + second.stderr
    previous = prefix.with_name("flowdrop.previous")
    assert "keeping the previous installation" in second.stdout
    assert f"rollback: stop flowdrop; mv {prefix} {prefix}.failed; mv {previous} {prefix}" in (
        second.stdout
    )
    assert json.loads((previous / "flowdrop-bundle.json").read_text())["commit"] != "another-build"
    assert json.loads((prefix / "flowdrop-bundle.json").read_text())["commit"] == "another-build"


def test_a_corrupted_wheel_is_refused_before_anything_is_installed(
    bundle: Bundle, tmp_path: Path
) -> None:
    """One flipped byte in one wheel: exit 1, the wheel named, no prefix created."""
    damaged = bundle.copy(tmp_path)
    wheel = next(p for p in sorted((damaged / "wheels").glob("*.whl")) if "flowdrop" not in p.name)
    data = bytearray(wheel.read_bytes())
    data[len(data) // 2] ^= 0xFF
    wheel.write_bytes(bytes(data))
    prefix = tmp_path / "prefix"
    done = install(damaged, prefix, "--no-systemd", tmp=tmp_path)
    assert done.returncode == 1
    assert f"wheels/{wheel.name}: FAILED" in done.stderr
    assert "checksum mismatch" in done.stderr
    assert "nothing was installed" in done.stderr
    assert not prefix.exists()


def test_a_wheel_not_listed_in_sha256sums_is_refused(bundle: Bundle, tmp_path: Path) -> None:
    """An extra wheel slipped into wheels/ could be picked by pip: refused, nothing installed."""
    tampered = bundle.copy(tmp_path)
    (tampered / "wheels" / "evil-1.0-py3-none-any.whl").write_bytes(b"PK\x05\x06" + bytes(18))
    prefix = tmp_path / "prefix"
    done = install(tampered, prefix, "--no-systemd", tmp=tmp_path)
    assert done.returncode == 1
    assert "wheels/evil-1.0-py3-none-any.whl is not listed in SHA256SUMS" in done.stderr
    assert not prefix.exists()


def test_systemd_files_are_installed_and_an_existing_config_is_never_overwritten(
    bundle: Bundle, installed: Path, tmp_path: Path
) -> None:
    """--root DIR: unit (ExecStart at the prefix), sysusers, tmpfiles, docs, config kept."""
    root = tmp_path / "sysroot"
    first = install(bundle.directory, installed, "--root", str(root), tmp=tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    unit = (root / "etc/systemd/system/flowdrop.service").read_text()
    assert f"ExecStart={installed}/bin/flowdrop serve --config /etc/flowdrop/flowdrop.yaml" in unit
    prune_unit = (root / "etc/systemd/system/flowdrop-prune.service").read_text()
    assert f"ExecStart={installed}/bin/flowdrop prune --config" in prune_unit
    assert (root / "etc/systemd/system/flowdrop-prune.timer").is_file()
    assert "systemctl enable --now flowdrop-prune.timer" in first.stdout
    assert (root / "etc/sysusers.d/flowdrop.conf").is_file()
    assert (root / "etc/tmpfiles.d/flowdrop.conf").is_file()
    assert (root / "usr/share/doc/flowdrop/operations.md").is_file()
    config = root / "etc/flowdrop/flowdrop.yaml"
    assert config.read_text() == (bundle.directory / "systemd/flowdrop.yaml").read_text()
    assert "systemctl enable --now flowdrop" in first.stdout
    config.write_text("workers: 7\n")
    second = install(bundle.directory, installed, "--root", str(root), tmp=tmp_path)
    assert second.returncode == 0, second.stdout + second.stderr
    assert config.read_text() == "workers: 7\n"
    assert "kept as it is" in second.stdout
    assert (root / "etc/flowdrop/flowdrop.yaml.example").is_file()


def test_install_sh_refuses_unknown_arguments_with_usage(bundle: Bundle, tmp_path: Path) -> None:
    done = install(bundle.directory, tmp_path / "p", "--frobnicate", tmp=tmp_path)
    assert done.returncode == 2
    assert "usage_error: unknown argument: --frobnicate" in done.stderr
    assert "./install.sh [--prefix /opt/flowdrop] [--no-systemd]" in done.stderr
