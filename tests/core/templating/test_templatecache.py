"""The template cache: parsed once per file identity and content, edits seen at once."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from flowdrop.core.errors import ErrorCode, FlowdropError
from flowdrop.core.templating.template import parse_yaml
from flowdrop.core.templating.templatecache import TemplateCache

TEXT = """\
metadata:
  id: cached
  version: {version}
parameters:
  - name: rate
    default: ~
  - name: plain
    default: null
  - name: quoted
    default: 'null'
nodes: []
"""


def _write(path: Path, version: str) -> None:
    path.write_text(TEXT.format(version=version))


def test_an_unchanged_file_is_parsed_once(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    _write(path, "1.0.0")
    cache = TemplateCache()
    first = cache.load(path)
    assert cache.load(path) is first
    assert (cache.hits, cache.misses) == (1, 1)


def test_an_edited_file_is_read_again(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    _write(path, "1.0.0")
    cache = TemplateCache()
    assert cache.load(path).version == "1.0.0"
    _write(path, "2.0.0")
    os.utime(path, ns=(1, 1))  # even an edit that keeps size and sets an old mtime (ctime moves)
    assert cache.load(path).version == "2.0.0"


def test_a_copy_with_the_same_bytes_is_not_parsed_again(tmp_path: Path) -> None:
    _write(tmp_path / "a.yaml", "1.0.0")
    _write(tmp_path / "b.yaml", "1.0.0")
    cache = TemplateCache()
    cache.load(tmp_path / "a.yaml")
    copy = cache.load(tmp_path / "b.yaml")
    assert cache.misses == 1
    assert copy.source_name == "b.yaml"


def test_errors_keep_their_wording_and_are_not_cached(tmp_path: Path) -> None:
    cache = TemplateCache()
    with pytest.raises(FlowdropError) as missing:
        cache.load(tmp_path / "absent.yaml")
    assert missing.value.code is ErrorCode.TEMPLATE_NOT_FOUND
    broken = tmp_path / "broken.yaml"
    broken.write_text("metadata: [1, 2\n")
    for _ in range(2):
        with pytest.raises(FlowdropError) as invalid:
            cache.load(broken)
        # PyYAML's wording (FlowTime's), not libyaml's "did not find expected ',' or ']'".
        assert invalid.value.message.startswith("YAML parsing error: expected ',' or ']'")


def test_null_defaults_read_the_same_through_libyaml(tmp_path: Path) -> None:
    """libyaml marks plain scalars with style '' where PyYAML says None."""
    path = tmp_path / "t.yaml"
    _write(path, "1.0.0")
    template = TemplateCache().load(path)
    texts = {p.name: p.default_text for p in template.parameters}
    assert texts == {"rate": None, "plain": None, "quoted": "null"}


def test_parse_yaml_words_errors_like_pyyaml() -> None:
    with pytest.raises(FlowdropError) as caught:
        parse_yaml("a: b: c\n")
    assert caught.value.message == (
        "YAML parsing error: mapping values are not allowed here (line 1, column 5)"
    )
