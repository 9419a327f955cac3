"""Daemon configuration: one YAML file, ``FLOWDROP_*`` environment overrides, pydantic validation.

Precedence, lowest first: built-in defaults → the YAML file → ``FLOWDROP_<KEY>`` variables.
Every relative path is resolved against the config file's directory (or the current directory
when there is no file), so the daemon never depends on its working directory (``--detach``
changes it to ``/``).

Defaults (``flowdrop serve`` with no configuration at all): everything lives under a *home*,
``$FLOWDROP_HOME``, else ``$STATE_DIRECTORY`` (set by systemd's ``StateDirectory=``), else
``$XDG_STATE_HOME/flowdrop`` (``~/.local/state/flowdrop``): ``spool/``, ``runs/``,
``telemetry/``, and templates searched in ``templates/`` then the bundled examples.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)

from flowdrop.core.contract import REQUEST_ID_PATTERN

ENV_PREFIX = "FLOWDROP_"
CONFIG_ENV = "FLOWDROP_CONFIG"
BUNDLED_TEMPLATES = Path(__file__).resolve().parent.parent / "examples" / "templates"
_LIST_KEYS = {"templates"}


class ConfigError(Exception):
    """The configuration is unusable; ``problems`` has one line per bad key. Exit code 2."""

    def __init__(self, problems: list[str], source: str) -> None:
        self.problems = problems
        self.source = source
        super().__init__(f"invalid configuration ({source}): " + "; ".join(problems))


DAY = 86_400.0
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": DAY, "w": 7 * DAY}


def parse_duration(value: Any) -> float | None:
    """``30d``, ``12h``, ``90m``, ``45s``, ``2w`` or a number of seconds; ``never`` is None."""
    if value is None:
        return None
    if isinstance(value, bool):
        msg = "must be a duration like 30d, 12h, 90m or never"
        raise ValueError(msg)
    if isinstance(value, int | float):
        if value < 0:
            msg = "must not be negative"
            raise ValueError(msg)
        return float(value)
    text = str(value).strip().lower()
    if text in {"never", "none", "null", "off"}:
        return None
    match = _DURATION_RE.match(text)
    if match is None:
        msg = f"{value!r} is not a duration: use e.g. 30d, 12h, 90m, 45s, 2w or never"
        raise ValueError(msg)
    return float(match.group(1)) * _UNITS[match.group(2)]


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    for unit, size in (("d", DAY), ("h", 3600.0), ("m", 60.0)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


# A retention age: "30d", "12h", "90m", "45s", "2w", a number of seconds, or never (None).
Duration = Annotated[float | None, BeforeValidator(parse_duration)]


class WatchMode(StrEnum):
    AUTO = "auto"
    INOTIFY = "inotify"
    POLLING = "polling"


class LogFormat(StrEnum):
    AUTO = "auto"
    JSON = "json"
    CONSOLE = "console"


def default_home(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    if env.get("FLOWDROP_HOME"):
        return Path(env["FLOWDROP_HOME"])
    if env.get("STATE_DIRECTORY"):
        return Path(env["STATE_DIRECTORY"].split(":")[0])
    base = env.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "flowdrop"


def default_instance() -> str:
    host = "".join(c if c.isalnum() or c in "-_" else "-" for c in socket.gethostname())
    return f"{host[:60] or 'host'}-{os.getpid()}"


class Settings(BaseModel):
    """The validated daemon configuration (all paths absolute)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    spool: Path
    runs_root: Path
    telemetry_root: Path
    templates: tuple[Path, ...]
    instance: str = Field(default_factory=default_instance, pattern=REQUEST_ID_PATTERN)
    workers: int = Field(default=2, ge=1, le=64)
    reconcile_interval: float = Field(default=30.0, gt=0, le=3600)
    watch: WatchMode = WatchMode.AUTO
    poll_interval: float = Field(default=2.0, gt=0, le=600)
    max_request_bytes: int = Field(default=1_048_576, ge=64, le=64 * 1_048_576)
    max_attempts: int = Field(default=3, ge=1, le=100)
    stale_after: float = Field(default=30.0, ge=0, le=86_400)
    # Crash debris (.tmp-* files and staging dirs) older than this is removed at start.
    temp_max_age: float = Field(default=3600.0, ge=60, le=30 * 86_400)
    drain_timeout: float = Field(default=60.0, ge=0, le=3600)
    # CPU-bound work (the orchestrator) in child processes; the spool stays in the daemon.
    worker_processes: bool = True
    # A request running longer ends failed/timeout and its worker process is replaced.
    request_timeout: float = Field(default=300.0, gt=0, le=7 * 86_400)
    # RLIMIT_AS of each worker process, in MiB (none by default).
    worker_memory_limit_mb: int | None = Field(default=None, ge=64, le=1_048_576)
    # Models remembered per (template, mode, parameters) by each worker; 0 turns the cache off.
    compile_cache_size: int = Field(default=64, ge=0, le=100_000)
    health_interval: float = Field(default=5.0, gt=0, le=600)
    health_file: Path | None = None
    metrics_file: Path | None = None
    # Retention (`flowdrop prune`): maximum ages of finished files and unneeded runs.
    retain_done: Duration = 30 * DAY
    retain_outbox: Duration = 30 * DAY
    retain_quarantine: Duration = 90 * DAY
    retain_runs: Duration = 30 * DAY
    # Keep outbox/index.html (the spool overview page) current from a background thread.
    status_page: bool = False
    log_format: LogFormat = LogFormat.AUTO
    log_level: str = "info"
    # "module:factory" returning a processor; default: the core orchestrator. For tests and
    # extensions; see docs/operations.md.
    processor: str | None = None

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        if value.lower() not in {"debug", "info", "warning", "error"}:
            msg = "must be one of debug, info, warning, error"
            raise ValueError(msg)
        return value.lower()

    # --- derived paths -------------------------------------------------------------------

    @property
    def health_path(self) -> Path:
        return self.health_file or self.spool / "state" / "health.json"

    @property
    def metrics_path(self) -> Path:
        return self.metrics_file or self.spool / "state" / "metrics.prom"

    def public(self) -> dict[str, Any]:
        """A JSON-friendly dump (paths as strings) for ``doctor`` and logs."""
        return self.model_dump(mode="json")


def _defaults(env: Mapping[str, str]) -> dict[str, Any]:
    home = default_home(env)
    return {
        "spool": home / "spool",
        "runs_root": home / "runs",
        "telemetry_root": home / "telemetry",
        "templates": [home / "templates", BUNDLED_TEMPLATES],
    }


def _env_overrides(env: Mapping[str, str]) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    for key in Settings.model_fields:
        raw = env.get(ENV_PREFIX + key.upper())
        if raw is None:
            continue
        if key in _LIST_KEYS:
            overrides[key] = [part for part in raw.split(os.pathsep) if part]
        elif raw.strip().lower() in {"", "null", "none"} and key.endswith("_file"):
            overrides[key] = None
        else:
            overrides[key] = raw
    return overrides


def _absolute(value: Any, base: Path) -> Any:
    if value is None:
        return None
    path = Path(os.path.expanduser(str(value)))
    return Path(os.path.normpath(path if path.is_absolute() else base / path))


def _inside(child: Path, parent: Path) -> bool:
    return child == parent or parent in child.parents


def _overlaps(settings: Settings) -> list[str]:
    problems: list[str] = []
    roots = {"spool": settings.spool, "runs_root": settings.runs_root}
    roots["telemetry_root"] = settings.telemetry_root
    names = list(roots)
    for i, first in enumerate(names):
        for second in names[i + 1 :]:
            a, b = roots[first], roots[second]
            if _inside(a, b) or _inside(b, a):
                problems.append(
                    f"{first} and {second} overlap ({a} / {b}); give each its own directory"
                )
    for directory in settings.templates:
        if _inside(directory, settings.spool):
            problems.append(f"templates: {directory} is inside the spool; move it out")
    return problems


def _format_errors(exc: ValidationError) -> list[str]:
    problems = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(part) for part in err["loc"]) or "(top level)"
        if err["type"] == "extra_forbidden":
            problems.append(f"{loc}: unknown key")
        else:
            problems.append(f"{loc}: {err['msg']}")
    return problems


def load_settings(
    path: Path | None = None,
    env: Mapping[str, str] | None = None,
    *,
    cwd: Path | None = None,
) -> Settings:
    """Build :class:`Settings` from defaults, the YAML file at ``path`` and the environment.

    ``path`` None means ``$FLOWDROP_CONFIG`` when set, else no file. Raises :class:`ConfigError`.
    """
    env = os.environ if env is None else env
    if path is None and env.get(CONFIG_ENV):
        path = Path(env[CONFIG_ENV])
    base = Path(cwd or Path.cwd())
    source = "defaults"
    data: dict[str, Any] = {}
    if path is not None:
        source = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError([f"cannot read config file: {exc.strerror or exc}"], source) from None
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
            problem = getattr(exc, "problem", None) or "syntax error"
            raise ConfigError([f"not valid YAML{where}: {problem}"], source) from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(["the file must contain a mapping of keys"], source)
        data = {str(k): v for k, v in loaded.items()}
        base = Path(path).resolve().parent
    merged: dict[str, Any] = {**_defaults(env), **data, **_env_overrides(env)}
    for key in ("spool", "runs_root", "telemetry_root", "health_file", "metrics_file"):
        if key in merged and isinstance(merged[key], str | Path):
            merged[key] = _absolute(merged[key], base)
    templates = merged.get("templates")
    if isinstance(templates, str | Path):
        templates = [templates]
    if isinstance(templates, list | tuple):
        merged["templates"] = tuple(
            _absolute(item, base) if isinstance(item, str | Path) else item for item in templates
        )
    try:
        settings = Settings.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc), source) from None
    problems = _overlaps(settings)
    if problems:
        raise ConfigError(problems, source)
    return settings


def describe_error(exc: ConfigError) -> str:
    lines = [f"config_invalid: the configuration ({exc.source}) is not valid:"]
    lines += [f"  - {problem}" for problem in exc.problems]
    return "\n".join(lines)
