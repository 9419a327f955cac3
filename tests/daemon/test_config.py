"""Config: defaults, YAML, FLOWDROP_* overrides, one clear message per bad key."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowdrop.daemon.config import (
    BUNDLED_TEMPLATES,
    DAY,
    ConfigError,
    Settings,
    WatchMode,
    default_home,
    describe_error,
    load_settings,
    parse_duration,
)


def test_defaults_need_no_file_and_live_under_the_home(tmp_path: Path) -> None:
    """With no file, everything lives under $FLOWDROP_HOME; bundled templates are searched last."""
    settings = load_settings(None, env={"FLOWDROP_HOME": str(tmp_path)})
    assert settings.spool == tmp_path / "spool"
    assert settings.runs_root == tmp_path / "runs"
    assert settings.telemetry_root == tmp_path / "telemetry"
    assert settings.templates == (tmp_path / "templates", BUNDLED_TEMPLATES)
    assert settings.workers == 2
    assert settings.watch is WatchMode.AUTO
    assert settings.health_path == tmp_path / "spool" / "state" / "health.json"


def test_default_home_prefers_state_directory_then_xdg() -> None:
    """STATE_DIRECTORY (systemd) wins over XDG_STATE_HOME."""
    assert default_home({"STATE_DIRECTORY": "/var/lib/flowdrop"}) == Path("/var/lib/flowdrop")
    assert default_home({"XDG_STATE_HOME": "/x"}) == Path("/x/flowdrop")


def test_yaml_paths_are_relative_to_the_file_and_env_overrides_win(tmp_path: Path) -> None:
    """Relative paths resolve against the config's directory; FLOWDROP_* beats the file."""
    config = tmp_path / "conf" / "flowdrop.yaml"
    config.parent.mkdir()
    config.write_text("spool: s\nruns_root: r\ntelemetry_root: t\ntemplates: tpl\nworkers: 3\n")
    settings = load_settings(config, env={"FLOWDROP_WORKERS": "5", "FLOWDROP_TEMPLATES": "/a:/b"})
    assert settings.spool == config.parent / "s"
    assert settings.workers == 5
    assert settings.templates == (Path("/a"), Path("/b"))


def test_config_env_names_the_file(tmp_path: Path) -> None:
    """$FLOWDROP_CONFIG is used when no path is given."""
    config = tmp_path / "c.yaml"
    config.write_text(
        f"spool: {tmp_path}/sp\nruns_root: {tmp_path}/r\ntelemetry_root: {tmp_path}/t\n"
    )
    assert load_settings(None, env={"FLOWDROP_CONFIG": str(config)}).spool == tmp_path / "sp"


def test_every_bad_key_gets_its_own_message(tmp_path: Path) -> None:
    """Unknown keys and invalid values are all reported, one line each."""
    config = tmp_path / "c.yaml"
    config.write_text("workers: 0\nwatch: sometimes\ncolour: blue\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(config, env={"FLOWDROP_HOME": str(tmp_path)})
    assert caught.value.problems == [
        "workers: Input should be greater than or equal to 1",
        "watch: Input should be 'auto', 'inotify' or 'polling'",
        "colour: unknown key",
    ]
    text = describe_error(caught.value)
    assert text.startswith(f"config_invalid: the configuration ({config}) is not valid:")


def test_invalid_yaml_and_non_mapping_are_config_errors(tmp_path: Path) -> None:
    """YAML syntax errors say where; a list at top level is refused."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("workers: [1,\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(bad, env={})
    assert caught.value.problems[0].startswith("not valid YAML (line ")
    listing = tmp_path / "list.yaml"
    listing.write_text("- a\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(listing, env={})
    assert caught.value.problems == ["the file must contain a mapping of keys"]
    with pytest.raises(ConfigError) as caught:
        load_settings(tmp_path / "missing.yaml", env={})
    assert caught.value.problems == ["cannot read config file: No such file or directory"]


def test_overlapping_roots_are_refused(tmp_path: Path) -> None:
    """The runs root inside the spool (or equal roots) is a configuration error."""
    env = {
        "FLOWDROP_SPOOL": str(tmp_path / "spool"),
        "FLOWDROP_RUNS_ROOT": str(tmp_path / "spool" / "runs"),
        "FLOWDROP_TELEMETRY_ROOT": str(tmp_path / "telemetry"),
        "FLOWDROP_TEMPLATES": str(tmp_path / "spool" / "tpl"),
    }
    with pytest.raises(ConfigError) as caught:
        load_settings(None, env=env)
    assert caught.value.problems[0].startswith("spool and runs_root overlap (")
    assert (
        caught.value.problems[1]
        == f"templates: {tmp_path / 'spool' / 'tpl'} is inside the spool; move it out"
    )


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30d", 30 * DAY),
        ("12h", 43_200.0),
        ("90m", 5400.0),
        ("45s", 45.0),
        ("2w", 14 * DAY),
        ("0", 0.0),
        (3600, 3600.0),
        ("never", None),
    ],
)
def test_durations_are_read_in_days_hours_minutes_seconds_weeks(
    text: str | int, seconds: float | None
) -> None:
    assert parse_duration(text) == seconds


def test_a_bad_retention_key_is_a_config_error(tmp_path: Path) -> None:
    config = tmp_path / "flowdrop.yaml"
    config.write_text("retain_runs: soon\nretain_done: -3\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(config, env={})
    assert caught.value.problems == [
        "retain_done: Value error, must not be negative",
        "retain_runs: Value error, 'soon' is not a duration: use e.g. 30d, 12h, 90m, 45s, 2w or never",
    ]


def test_retention_keys_come_from_the_environment_too(tmp_path: Path) -> None:
    settings = load_settings(
        None, env={"FLOWDROP_HOME": str(tmp_path), "FLOWDROP_RETAIN_RUNS": "7d"}
    )
    assert isinstance(settings, Settings)
    assert settings.retain_runs == 7 * DAY
