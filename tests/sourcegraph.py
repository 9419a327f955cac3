"""Reading src/ as an import graph, for the house-rule tests (layering, dead modules).

Imports are read with ``ast``, function-level ones included (a circle hidden inside a function
is still a circle); relative imports are not used in src/ and are not followed.
"""

from __future__ import annotations

import ast
from pathlib import Path

import flowdrop

SRC = Path(flowdrop.__file__).parent


def module_name(path: Path) -> str:
    """``src/flowdrop/core/fs/storage.py`` -> ``flowdrop.core.fs.storage`` (packages by name)."""
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every absolute name ``path`` imports; ``from a import b`` gives ``a`` and ``a.b``."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the modules under ``root`` it imports (itself excluded)."""
    modules = {module_name(p): p for p in root.rglob("*.py")}
    return {
        name: {dep for dep in imports(path) if dep in modules and dep != name}
        for name, path in modules.items()
    }
