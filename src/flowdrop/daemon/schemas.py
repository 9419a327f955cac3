"""The JSON Schemas section of docs/protocol.md, generated from the contract models.

``flowdrop schema --markdown`` prints it; ``tests/daemon/test_schemas.py`` checks that the
docs contain exactly this text, so the published schemas cannot drift from the code.
"""

from __future__ import annotations

import json

from flowdrop.core.contract import json_schemas

BEGIN = "<!-- BEGIN GENERATED SCHEMAS (flowdrop schema --markdown) -->"
END = "<!-- END GENERATED SCHEMAS -->"


def schemas_json() -> str:
    return json.dumps(json_schemas(), indent=2, sort_keys=True) + "\n"


def markdown_section() -> str:
    parts = [BEGIN, ""]
    for name, schema in json_schemas().items():
        parts.append(f"#### `{name}`")
        parts.append("")
        parts.append("```json")
        parts.append(json.dumps(schema, indent=2, sort_keys=True))
        parts.append("```")
        parts.append("")
    parts.append(END)
    return "\n".join(parts) + "\n"


def extract_section(document: str) -> str | None:
    start = document.find(BEGIN)
    end = document.find(END)
    if start < 0 or end < 0:
        return None
    return document[start : end + len(END)] + "\n"
