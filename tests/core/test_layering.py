"""core/ is FlowTime and orchestration: it never imports the daemon's world."""

from __future__ import annotations

import ast
from pathlib import Path

import flowdrop.core

FORBIDDEN = ("watchdog", "signal", "daemon", "flowdrop.daemon", "argparse")


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_core_never_imports_watchdog_signals_python_daemon_or_the_cli() -> None:
    core = Path(flowdrop.core.__file__).parent
    offenders = {
        f"{path.name}: {name}"
        for path in sorted(core.glob("*.py"))
        for name in _imports(path)
        if any(name == bad or name.startswith(bad + ".") for bad in FORBIDDEN)
    }
    assert offenders == set()


def test_the_checker_sees_a_forbidden_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("import signal\nfrom watchdog.observers import Observer\n")
    assert {"signal", "watchdog.observers"} <= _imports(module)
