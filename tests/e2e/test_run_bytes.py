"""Pinned bytes: the same request gives the same run directories and bundles, file for file.

The expected digests live in ``tests/golden/run_bytes.json``. A change that is meant to alter
the artifacts (new series, new fields) regenerates them with ``FLOWDROP_REGEN_GOLDEN=1`` and says
so in its commit; any other change must leave every byte alone (issue #8: a refactor moves code,
not bytes).
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from flowdrop.core.contract import RunRequest, State
from flowdrop.core.orchestration.orchestrator import Roots, orchestrate
from tests.realtemplates import templates_dir

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "run_bytes.json"
FIXED = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
PINNED = [
    "warehouse-picker-waves",
    "transportation-basic-classes",
    "network-reliability",
    "it-document-processing-continuous",
]


def _digests(root: Path) -> dict[str, str]:
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file() and not path.name.endswith(".lock")
    }


def _loop(base: Path, templates: Path, template_id: str) -> dict[str, Any]:
    roots = Roots(base / "runs", base / "telemetry", (templates,))
    roots.runs.mkdir(parents=True)
    roots.telemetry.mkdir()
    body = {"templateId": template_id, "mode": "telemetry", "rng": {"kind": "pcg32", "seed": 7}}
    request = RunRequest.model_validate_json(json.dumps(body))
    result = orchestrate(request, roots, request_id="pin", clock=lambda: FIXED)
    assert result.state is State.SUCCEEDED, result.error
    return {"runs": _digests(roots.runs), "telemetry": _digests(roots.telemetry)}


@pytest.mark.parametrize("template_id", PINNED)
def test_the_same_request_writes_the_pinned_bytes(template_id: str, tmp_path: Path) -> None:
    templates = templates_dir()
    if templates is None or not templates.is_dir():
        pytest.skip("real FlowTime templates not found")
    seen = _loop(tmp_path, templates, template_id)
    golden = json.loads(GOLDEN.read_text()) if GOLDEN.exists() else {}
    if os.environ.get("FLOWDROP_REGEN_GOLDEN"):
        golden[template_id] = seen
        GOLDEN.write_text(json.dumps(golden, indent=1, sort_keys=True) + "\n")
    assert seen == golden[template_id]
