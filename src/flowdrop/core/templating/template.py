"""Loading FlowTime templates: the header (id, version, parameters, rng) and the raw text.

A template is kept as its raw YAML text because parameter substitution is textual over the whole
document (spec §2); only the header is interpreted at load time. Full validation happens when a
model is generated (see :mod:`flowdrop.core.templating.model`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from flowdrop.core.errors import ErrorCode, FlowdropError

_NEUTRAL = re.compile(r"\$\{[^}]+\}")


@dataclass(frozen=True)
class ParameterSpec:
    """One entry of ``parameters[]``; ``default_text`` keeps the raw YAML scalar(s)."""

    name: str
    type: str
    default: Any = None
    minimum: float | None = None
    maximum: float | None = None
    array_of: str | None = None
    title: str | None = None
    description: str | None = None
    default_text: str | list[str] | None = None

    @property
    def min(self) -> float | None:
        """Alias of ``minimum`` (templates accept ``min`` and ``minimum``)."""
        return self.minimum

    @property
    def max(self) -> float | None:
        """Alias of ``maximum``."""
        return self.maximum


@dataclass(frozen=True)
class Template:
    """A loaded template: header fields plus the raw YAML text."""

    id: str
    version: str
    title: str
    text: str
    mode: str = "simulation"
    capture_key: str | None = None
    declares_rng: bool = False
    stochastic_reasons: list[str] = field(default_factory=list)
    parameters: tuple[ParameterSpec, ...] = ()
    description: str | None = None
    narrative: str | None = None
    source_name: str | None = None

    def parameter(self, name: str) -> ParameterSpec | None:
        """The declaration of parameter ``name``, if any."""
        return next((p for p in self.parameters if p.name == name), None)


def _invalid(message: str, **details: Any) -> FlowdropError:
    return FlowdropError(ErrorCode.TEMPLATE_INVALID, message, **details)


# libyaml parses about ten times faster than PyYAML's pure-Python loader and builds the same
# Python values (both use SafeConstructor), but words its errors differently; FlowTime's messages
# are PyYAML's, so the pure loader runs again only to word an error.
_FAST_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def parse_yaml(text: str) -> Any:
    """``yaml.safe_load`` (libyaml when available) with FlowTime's error wording."""
    try:
        return yaml.load(text, Loader=_FAST_LOADER)
    except yaml.YAMLError:
        pass
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise _invalid(f"YAML parsing error: {_yaml_problem(exc)}") from None


def _yaml_problem(exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        return f"{exc.problem or exc.context or 'invalid YAML'}{where}"
    return str(exc)


def _raw_scalars(node: yaml.Node | None) -> str | list[str] | None:
    """Raw text of a scalar node, or of each scalar in a sequence (upstream reads defaults untyped)."""
    if isinstance(node, yaml.ScalarNode):
        # A plain scalar's style is None from PyYAML and "" from libyaml.
        if node.tag == "tag:yaml.org,2002:null" and not node.style:
            return None
        return str(node.value)
    if isinstance(node, yaml.SequenceNode):
        return [str(item.value) for item in node.value if isinstance(item, yaml.ScalarNode)]
    return None


DefaultTexts = dict[str, str | list[str] | None]


def _default_texts(text: str) -> DefaultTexts:
    try:
        root = yaml.compose(text, Loader=_FAST_LOADER)
    except yaml.YAMLError:
        return {}
    return _defaults_of(root)


def _load_with_defaults(text: str) -> tuple[Any, DefaultTexts] | None:
    """``yaml.load`` by libyaml and the raw default texts, from one composed node tree (a cold
    template was composed twice); None where libyaml rejects the text."""
    loader = _FAST_LOADER(text)
    try:
        node = loader.get_single_node()
        texts = _defaults_of(node)  # before construction: it flattens merge keys in the nodes
        return (None if node is None else loader.construct_document(node)), texts
    except yaml.YAMLError:
        return None
    finally:
        loader.dispose()


def _defaults_of(root: yaml.Node | None) -> DefaultTexts:
    out: DefaultTexts = {}
    if not isinstance(root, yaml.MappingNode):
        return out
    for key, value in root.value:
        if key.value != "parameters" or not isinstance(value, yaml.SequenceNode):
            continue
        for entry in value.value:
            if not isinstance(entry, yaml.MappingNode):
                continue
            fields = {k.value: v for k, v in entry.value}
            name_node = fields.get("name")
            if isinstance(name_node, yaml.ScalarNode) and "default" in fields:
                out[str(name_node.value)] = _raw_scalars(fields["default"])
    return out


def _number_or_none(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(str(value))
    except ValueError:
        return None


def _parameters(raw: Any, texts: DefaultTexts) -> tuple[ParameterSpec, ...]:
    if not isinstance(raw, list):
        return ()
    specs: list[ParameterSpec] = []
    for index, entry in enumerate(raw):
        if not isinstance(entry, dict) or not entry.get("name"):
            raise _invalid(
                "Template parameters must declare a name.", path=f"parameters[{index}].name"
            )
        name = str(entry["name"])
        minimum = entry.get("min", entry.get("minimum"))
        maximum = entry.get("max", entry.get("maximum"))
        specs.append(
            ParameterSpec(
                name=name,
                type=str(entry.get("type") or "string"),
                default=entry.get("default"),
                minimum=_number_or_none(minimum),
                maximum=_number_or_none(maximum),
                array_of=None if entry.get("arrayOf") is None else str(entry["arrayOf"]),
                title=None if entry.get("title") is None else str(entry["title"]),
                description=None if entry.get("description") is None else str(entry["description"]),
                default_text=texts.get(name),
            )
        )
    return tuple(specs)


def _optional_str(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def parse_template(text: str, *, source_name: str | None = None) -> Template:
    """Parse the template header from YAML text; raise TEMPLATE_INVALID when it is unusable."""
    if not text.strip():
        raise _invalid("Template YAML content is empty.")
    loaded = _load_with_defaults(text)
    if loaded is not None:
        root, texts = loaded
    else:
        try:
            root = parse_yaml(text)
        except FlowdropError:
            # Placeholders inside flow collections ({bins: ${bins}}) are not YAML until
            # substituted; the header only needs to survive, so read it with neutral values.
            root = parse_yaml(_NEUTRAL.sub("0", text))
            texts = _default_texts(_NEUTRAL.sub("0", text))
        else:
            texts = _default_texts(text)
    if not isinstance(root, dict):
        raise _invalid("YAML parsing error: the template root must be a mapping.")
    metadata = root.get("metadata")
    if not isinstance(metadata, dict):
        raise _invalid("Template metadata is required.", path="metadata")
    template_id = _optional_str(metadata.get("id"))
    if template_id is None:
        raise _invalid("Template metadata.id is required.", path="metadata.id")
    rng = root.get("rng")
    declares_rng = isinstance(rng, dict) and (
        _optional_str(rng.get("kind")) is not None or _optional_str(rng.get("seed")) is not None
    )
    reasons = ["rng block"] if declares_rng else []
    nodes = root.get("nodes")
    if isinstance(nodes, list):
        reasons.extend(
            f"pmf node '{node.get('id')}'"
            for node in nodes
            if isinstance(node, dict) and node.get("kind") == "pmf"
        )
    mode = str(root.get("mode") or "simulation").lower()
    return Template(
        id=template_id,
        version=str(metadata.get("version") or ""),
        title=str(metadata.get("title") or template_id),
        text=text,
        mode=mode,
        capture_key=_optional_str(metadata.get("captureKey")),
        declares_rng=declares_rng,
        stochastic_reasons=reasons,
        parameters=_parameters(root.get("parameters"), texts),
        description=_optional_str(metadata.get("description")),
        narrative=_optional_str(metadata.get("narrative")),
        source_name=source_name,
    )


def load_template(source: Path | str) -> Template:
    """Load a template from a file (``Path``) or from YAML text (``str``)."""
    if isinstance(source, str):
        return parse_template(source)
    if not source.is_file():
        raise FlowdropError(
            ErrorCode.TEMPLATE_NOT_FOUND,
            f"Template file '{source.name}' was not found.",
            file=source.name,
        )
    try:
        text = source.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise _invalid(
            f"Template file '{source.name}' could not be read: {type(exc).__name__}.",
            file=source.name,
        ) from None
    return parse_template(text, source_name=source.name)


def _header_id(path: Path) -> str | None:
    try:
        root = yaml.load(path.read_text(encoding="utf-8-sig"), Loader=_FAST_LOADER)
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    if isinstance(root, dict) and isinstance(root.get("metadata"), dict):
        return _optional_str(root["metadata"].get("id"))
    return None


def find_template(template_id: str, directories: Sequence[Path]) -> Path:
    """The file whose ``metadata.id`` (fallback: file stem) equals ``template_id``, case-sensitive."""
    for directory in directories:
        if not directory.is_dir():
            continue
        candidates = sorted(
            p for p in directory.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file()
        )
        for path in candidates:
            if (_header_id(path) or path.stem) == template_id:
                return path
    raise FlowdropError(
        ErrorCode.TEMPLATE_NOT_FOUND,
        f"Template '{template_id}' was not found.",
        templateId=template_id,
    )
