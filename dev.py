#!/usr/bin/env python3
"""Set-up-and-run entry point: needs only Python 3.11 and pip.

    python3 dev.py demo      # the whole simulate -> capture -> replay loop in a temporary spool
    python3 dev.py test      # the whole test suite (pytest args may follow)
    python3 dev.py lint      # ruff (lint + format check) and mypy --strict on src/

The first call creates ``.venv`` and installs flowdrop editable with its dev extras; later calls
reinstall only when pyproject.toml changed.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
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
        [str(BIN / "python"), "-m", "pip", "install", "--quiet", "-e", f"{ROOT}[dev]"],
        check=True,
    )
    STAMP.write_text(wanted)


def _run(argv: list[str]) -> int:
    return subprocess.run(argv, cwd=ROOT).returncode


def main(args: list[str]) -> int:
    if not args or args[0] not in {"demo", "test", "lint", "env"}:
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
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
