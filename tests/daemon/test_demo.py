"""`flowdrop demo`: the four-step story runs on the bundled templates and says so."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

from flowdrop.daemon.demo import run_demo


def test_demo_tells_the_whole_story_and_exits_zero() -> None:
    """generated, reused, stochastic_template, invalid_json — and a summary table."""
    out = io.StringIO()
    assert run_demo(out) == 0, out.getvalue()
    text = out.getvalue()
    assert "succeeded: bundle generated (demo-orders)" in text
    assert "succeeded: bundle reused (demo-orders)" in text
    assert "failed: stochastic_template: Template 'demo-stochastic' declares randomness" in text
    assert "rejected: invalid_json: Request is not valid JSON:" in text
    assert "capturing (Generating telemetry bundle…)" in text
    assert "replaying (Replaying telemetry…)" in text
    assert "every outcome as expected." in text
    assert "spool/quarantine: not-json.json, not-json.json.reason.json" in text
    named = [line for line in text.splitlines() if line.startswith("run report of run_")]
    assert named and named[0].endswith("in a browser")
    path = named[0].split("file://", 1)[1].removesuffix(" in a browser")
    assert "Capture vs replay" in Path(path).read_text(encoding="utf-8")


def test_demo_command_finishes_in_a_few_seconds() -> None:
    """The README's main command: no arguments, no configuration, exit 0."""
    done = subprocess.run(
        [sys.executable, "-m", "flowdrop.daemon.cli", "demo"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("flowdrop demo: drop request files into an inbox")
    # The story only: no log lines from the daemon or its worker processes in between.
    assert [line for line in done.stdout.splitlines() if line.startswith("{")] == []
