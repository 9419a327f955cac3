"""The docs match the code: generated schemas, every error code, every CLI command."""

from __future__ import annotations

from pathlib import Path

from flowdrop.core.errors import ErrorCode
from flowdrop.daemon.cli import COMMANDS
from flowdrop.daemon.config import Settings
from flowdrop.daemon.schemas import extract_section, markdown_section

ROOT = Path(__file__).resolve().parents[2]
PROTOCOL = ROOT / "docs" / "protocol.md"
OPERATIONS = ROOT / "docs" / "operations.md"


def test_protocol_schemas_are_the_generated_ones() -> None:
    """docs/protocol.md holds exactly `flowdrop schema --markdown` (regenerate if this fails)."""
    assert extract_section(PROTOCOL.read_text()) == markdown_section()


def test_every_error_code_is_in_the_protocol_table() -> None:
    """Each ErrorCode has a row `| \\`code\\` |` in docs/protocol.md."""
    text = PROTOCOL.read_text()
    missing = [code.value for code in ErrorCode if f"| `{code.value}` |" not in text]
    assert missing == []


def test_every_cli_command_is_documented() -> None:
    """README or operations.md mention every `flowdrop <command>`."""
    text = (ROOT / "README.md").read_text() + OPERATIONS.read_text()
    missing = [name for name in COMMANDS if f"flowdrop {name}" not in text]
    assert missing == []


def test_every_config_key_is_documented() -> None:
    """operations.md names every configuration key."""
    text = OPERATIONS.read_text()
    missing = [key for key in Settings.model_fields if f"`{key}`" not in text]
    assert missing == []


def test_daemon_section_exists_in_architecture() -> None:
    """docs/architecture.md has the daemon's section."""
    assert "## Daemon" in (ROOT / "docs" / "architecture.md").read_text()


def test_every_module_is_in_an_architecture_table() -> None:
    """docs/architecture.md names every module of src/flowdrop/core and daemon in a table row."""
    import flowdrop

    package = Path(flowdrop.__file__).parent
    rows = [
        line
        for line in (ROOT / "docs" / "architecture.md").read_text().splitlines()
        if line.startswith("| `")
    ]
    text = "\n".join(rows)
    modules = [
        str(path.relative_to(package))
        for folder in ("core", "daemon")
        for path in sorted((package / folder).rglob("*.py"))
        if path.name != "__init__.py"
    ]
    assert [m for m in modules if f"`{m}`" not in text] == []
