"""Template loading and lookup: header fields, stochastic reasons, error paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowdrop.core.engine import find_template, load_template
from flowdrop.core.errors import ErrorCode, FlowdropError

HEADER = """\
schemaVersion: 1
metadata:
  id: demo
  title: Demo
  version: 1.2.3
  captureKey: "  demo-key  "
rng:
  kind: pcg32
  seed: 7
parameters:
  - name: rate
    type: number
    default: 0.30
    minimum: 0
    max: 5
  - name: pattern
    type: array
    default: [1, 2.5]
nodes:
  - id: p
    kind: pmf
    pmf: {values: [1], probabilities: [1]}
"""


def test_header_fields_are_exposed() -> None:
    """id, version, title, trimmed captureKey, rng and pmf reasons, parameter specs."""
    template = load_template(HEADER)
    assert (template.id, template.version, template.title) == ("demo", "1.2.3", "Demo")
    assert template.capture_key == "demo-key"
    assert template.declares_rng is True
    assert template.stochastic_reasons == ["rng block", "pmf node 'p'"]
    rate = template.parameter("rate")
    assert rate is not None
    assert (rate.type, rate.default, rate.minimum, rate.maximum) == ("number", 0.3, 0.0, 5.0)
    assert (rate.min, rate.max) == (0.0, 5.0)
    assert rate.default_text == "0.30"
    pattern = template.parameter("pattern")
    assert pattern is not None and pattern.default_text == ["1", "2.5"]
    assert template.mode == "simulation" and template.text == HEADER


def test_template_without_rng_or_pmf_is_deterministic() -> None:
    """No rng block and no pmf node -> no stochastic reasons."""
    template = load_template("metadata: {id: x, title: X, version: 1.0.0}\nnodes: []\n")
    assert template.declares_rng is False and template.stochastic_reasons == []
    assert template.capture_key is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "Template YAML content is empty."),
        ("   \n", "Template YAML content is empty."),
        ("- a\n- b\n", "YAML parsing error: the template root must be a mapping."),
        ("metadata: {title: X}\n", "Template metadata.id is required."),
        (
            "metadata: [\n",
            "YAML parsing error: expected the node content, but found '<stream end>' (line 2, column 1)",
        ),
    ],
)
def test_invalid_templates(text: str, message: str) -> None:
    """Unusable text is TEMPLATE_INVALID with a precise message."""
    with pytest.raises(FlowdropError) as caught:
        load_template(text)
    assert caught.value.code is ErrorCode.TEMPLATE_INVALID
    assert caught.value.message == message


def test_missing_file_is_not_found_without_host_path(tmp_path: Path) -> None:
    """A missing file raises TEMPLATE_NOT_FOUND; details name only the file."""
    with pytest.raises(FlowdropError) as caught:
        load_template(tmp_path / "nope.yaml")
    assert caught.value.code is ErrorCode.TEMPLATE_NOT_FOUND
    assert caught.value.message == "Template file 'nope.yaml' was not found."
    assert caught.value.details == {"file": "nope.yaml"}


def test_find_template_by_metadata_id_then_stem(tmp_path: Path) -> None:
    """metadata.id wins; the stem is the fallback; lookup is case-sensitive."""
    (tmp_path / "a.yaml").write_text("metadata: {id: alpha}\n")
    (tmp_path / "beta.yml").write_text("not: [valid\n")
    assert find_template("alpha", [tmp_path]) == tmp_path / "a.yaml"
    assert find_template("beta", [tmp_path / "missing", tmp_path]) == tmp_path / "beta.yml"
    with pytest.raises(FlowdropError) as caught:
        find_template("Alpha", [tmp_path])
    assert caught.value.code is ErrorCode.TEMPLATE_NOT_FOUND
    assert caught.value.message == "Template 'Alpha' was not found."


def test_default_texts_are_read_from_the_nodes_before_merge_keys_are_flattened() -> None:
    """One composed tree gives both the values and the raw default texts; the texts are read
    as composed (a default reached only through ``<<`` has no raw text, as before), and a
    placeholder in a flow collection still falls back to neutral values."""
    text = (
        "metadata: {id: t}\n"
        "base: &p {type: number, default: 1.50}\n"
        "parameters:\n"
        "  - <<: *p\n"
        "    name: rate\n"
        "  - {name: cap, type: number, default: 2.50}\n"
    )
    rate, cap = load_template(text).parameters
    assert (rate.default, rate.default_text) == (1.5, None)
    assert (cap.default, cap.default_text) == (2.5, "2.50")
    flow = "metadata: {id: t}\ngrid: {bins: ${bins}}\nparameters:\n  - {name: bins, default: 07}\n"
    assert load_template(flow).parameters[0].default_text == "07"
