"""Settings: each declared once, from flags, environment and a config file; registry
credentials from a docker config.json."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from porter_bundle import config
from porter_bundle.cli import main
from porter_bundle.cli.serve import serve_flags
from porter_bundle.config import Settings, load_registry_auths
from porter_bundle.config.settings import option_of
from porter_bundle.config.table import replace_table
from tests.test_cli import BIN


def test_auths_from_docker_config(tmp_path: Path):
    cfg = tmp_path / "config.json"
    cfg.write_text(
        json.dumps(
            {
                "auths": {
                    "https://ghcr.io": {"auth": base64.b64encode(b"bot:tok:en").decode()},
                    "127.0.0.1:5000": {"username": "u", "password": "p"},
                    "empty.example.com": {},
                }
            }
        )
    )
    assert load_registry_auths(str(cfg)) == {
        "ghcr.io": ("bot", "tok:en"),
        "127.0.0.1:5000": ("u", "p"),
    }
    assert load_registry_auths("") == {}


def test_unreadable_config_names_the_file_and_not_the_secret(tmp_path: Path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"auths": {"h": {"auth": "!!not-base64-s3cret!!"}}}')
    with pytest.raises(ValueError) as err:
        load_registry_auths(str(bad))
    assert str(bad) in str(err.value) and "s3cret" not in str(err.value)
    with pytest.raises(ValueError):
        load_registry_auths(str(tmp_path / "missing.json"))


def test_serve_refuses_to_start_with_an_unreadable_registry_config(tmp_path: Path, caplog):
    code = main(
        [
            "serve",
            "--address",
            "127.0.0.1:0",
            "--database",
            f"sqlite:///{tmp_path / 'x.db'}",
            "--registry-config",
            str(tmp_path / "missing.json"),
        ]
    )
    assert code == 2 and "missing.json" in caplog.text


# --- the settings: declared once, loaded from flags, environment and a config file -------------

SECRET_URL = "postgresql+psycopg://alice:s3cret@db/x"


def _flags(*argv: str) -> dict[str, Any]:
    return serve_flags(argv)


def test_every_setting_has_an_env_variable_and_a_flag():
    envs, flags = set(), set()
    for name, field in Settings.model_fields.items():
        option = option_of(field)
        assert option.env.startswith("PORTER_BUNDLE_"), name
        assert field.description, name
        envs.add(option.env)
        if name != "encryption_key":  # env only: a key on a command line shows in ps
            assert option.flag and option.flag.startswith("--"), name
            flags.add(option.flag)
    assert len(envs) == len(Settings.model_fields) and len(flags) == len(envs) - 1
    assert option_of(Settings.model_fields["encryption_key"]).flag is None
    assert "ps" in (Settings.model_fields["encryption_key"].description or "")


def test_flags_keep_their_names():
    settings = config.load_settings(
        _flags(
            "--address", "0.0.0.0:4000", "--grace-period", "2.5", "--workers", "3",
            "--run-timeout", "60", "--max-concurrent-runs", "2", "--cancel-grace", "1",
            "--container-network", "bridge", "--insecure-registry", "a:5000",
            "--insecure-registry", "b", "--stream-heartbeat", "0.5", "--stream-recheck", "2",
            "--schema-check", "MINOR", "--legacy-reveal-sensitive", "--insecure",
            "--log-level", "debug",
        ),
        environ={},
    )  # fmt: skip
    assert (settings.address, settings.grace_seconds, settings.workers) == ("0.0.0.0:4000", 2.5, 3)
    assert (settings.run_timeout_seconds, settings.max_concurrent_runs) == (60, 2)
    assert (settings.cancel_grace_seconds, settings.container_network) == (1, "bridge")
    assert settings.insecure_registries == frozenset({"a:5000", "b"})
    assert (settings.stream_heartbeat_seconds, settings.stream_recheck_seconds) == (0.5, 2)
    assert (settings.schema_check, settings.log_level) == ("minor", "DEBUG")
    assert settings.legacy_reveal_sensitive and settings.insecure
    assert config.load_settings(_flags(), environ={}) == Settings()


def test_environment_gives_every_setting():
    environ = {
        "PORTER_BUNDLE_WORKERS": "3",
        "PORTER_BUNDLE_GRACE_PERIOD": "1.5",
        "PORTER_BUNDLE_INSECURE_REGISTRIES": "a:5000, b,,",
        "PORTER_BUNDLE_LEGACY_REVEAL_SENSITIVE": "true",
        "PORTER_BUNDLE_INSECURE": "0",
        "PORTER_BUNDLE_SCHEMA_CHECK": "None",
        "PORTER_BUNDLE_STREAM_RECHECK": "0.25",
        "PORTER_BUNDLE_ENCRYPTION_KEY": "k3y",
        "PORTER_BUNDLE_CONTAINER_HOST": "",  # empty: unset
        "PORTER_BUNDLE_TEST_POSTGRES": "not a setting",
    }
    settings = config.load_settings(environ=environ)
    assert (settings.workers, settings.grace_seconds, settings.stream_recheck_seconds) == (
        3,
        1.5,
        0.25,
    )
    assert settings.insecure_registries == frozenset({"a:5000", "b"})
    assert settings.legacy_reveal_sensitive and not settings.insecure
    assert settings.schema_check == "none" and settings.container_host is None
    assert settings.encryption_key.get_secret_value() == "k3y"


def test_settings_built_in_code_ignore_the_environment(monkeypatch):
    monkeypatch.setenv("PORTER_BUNDLE_WORKERS", "3")
    assert Settings().workers == 8
    assert config.load_settings().workers == 3


def test_config_file_and_precedence(tmp_path: Path):
    file = tmp_path / "porter-bundle.yaml"
    file.write_text(
        "workers: 2\ngrace_seconds: 7\ninsecure_registries: [a, b]\ninsecure: true\n"
        "audit_log: /var/log/audit\n"
    )
    from_file = config.load_settings(config_file=str(file), environ={})
    assert (from_file.workers, from_file.grace_seconds, from_file.insecure) == (2, 7, True)
    assert from_file.insecure_registries == frozenset({"a", "b"})
    # flag > env > file > default
    environ = {"PORTER_BUNDLE_CONFIG": str(file), "PORTER_BUNDLE_WORKERS": "5"}
    settings = config.load_settings(environ=environ)
    assert (settings.workers, settings.grace_seconds, settings.run_timeout_seconds) == (5, 7, 3600)
    settings = config.load_settings(_flags("--workers", "6", "--no-insecure"), environ=environ)
    assert (settings.workers, settings.insecure, settings.audit_log) == (6, False, "/var/log/audit")


def test_config_file_problems_are_named(tmp_path: Path):
    with pytest.raises(config.SettingsError, match=r"missing.yaml .* does not exist"):
        config.load_settings(config_file=str(tmp_path / "missing.yaml"), environ={})
    typo = tmp_path / "typo.yaml"
    typo.write_text("adress: 0.0.0.0:1\n")
    with pytest.raises(
        config.SettingsError, match=f"unknown setting 'adress' in config file {typo}"
    ):
        config.load_settings(config_file=str(typo), environ={})
    listed = tmp_path / "list.yaml"
    listed.write_text("- workers\n")
    with pytest.raises(config.SettingsError, match="not a YAML mapping"):
        config.load_settings(config_file=str(listed), environ={})


@pytest.mark.parametrize(
    ("flags", "environ", "named"),
    [
        (("--tls-cert", "c.pem"), {}, ["--tls-cert", "--tls-key", "PORTER_BUNDLE_TLS_KEY"]),
        ((), {"PORTER_BUNDLE_TLS_KEY": "k.pem"}, ["--tls-cert", "PORTER_BUNDLE_TLS_CERT"]),
        (("--tls-client-ca", "ca.pem"), {}, ["--tls-client-ca", "--tls-cert", "--tls-key"]),
        (("--workers", "0"), {}, ["--workers", "PORTER_BUNDLE_WORKERS"]),
        ((), {"PORTER_BUNDLE_RUN_TIMEOUT": "0"}, ["--run-timeout", "PORTER_BUNDLE_RUN_TIMEOUT"]),
        (("--max-concurrent-runs", "-1"), {}, ["--max-concurrent-runs"]),
        ((), {"PORTER_BUNDLE_STREAM_RECHECK": "-2"}, ["--stream-recheck"]),
        ((), {"PORTER_BUNDLE_SCHEMA_CHECK": "loose"}, ["--schema-check", "'none'"]),
        (("--address", "nowhere"), {}, ["--address", "PORTER_BUNDLE_ADDRESS", "host:port"]),
        (("--address", "[1:2:3]:1"), {}, ["--address", "IPv6"]),
        (("--address", "h:99999"), {}, ["--address"]),
        (("--insecure-registry", "http://r/x"), {}, ["--insecure-registry", "host[:port]"]),
        ((), {"PORTER_BUNDLE_INSECURE": "maybe"}, ["--insecure", "PORTER_BUNDLE_INSECURE"]),
    ],
)
def test_invalid_values_name_the_setting(flags, environ, named):
    with pytest.raises(config.SettingsError) as err:
        config.load_settings(_flags(*flags), environ=environ)
    for text in named:
        assert text in str(err.value)


def test_errors_and_repr_never_show_a_secret():
    with pytest.raises(config.SettingsError) as err:
        config.load_settings(environ={"PORTER_BUNDLE_WORKERS": "s3cret"})
    assert "s3cret" not in str(err.value) and "PORTER_BUNDLE_WORKERS" in str(err.value)
    settings = Settings(database=SECRET_URL, encryption_key="k3y-material")
    assert "s3cret" not in repr(settings) and "k3y-material" not in repr(settings)
    assert "alice" in repr(settings) and settings.database_url == SECRET_URL
    with pytest.raises(ValidationError):
        Settings(workers=0)


def test_serve_exits_2_naming_the_setting(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["serve", "--tls-cert", "c.pem"])
    assert exit_.value.code == 2
    assert "--tls-key / PORTER_BUNDLE_TLS_KEY" in capsys.readouterr().err


def test_serve_help_shows_no_environment_or_config_file_value(tmp_path: Path):
    environ = {**os.environ}
    for n, field in enumerate(Settings.model_fields.values()):
        option = option_of(field)
        environ[option.env] = "true" if field.annotation is bool else f"env-marker-{n}"
    environ["PORTER_BUNDLE_DATABASE"] = SECRET_URL
    file = tmp_path / "settings.yaml"
    file.write_text("audit_log: file-marker\n")
    environ["PORTER_BUNDLE_CONFIG"] = str(file)
    done = subprocess.run(
        [str(BIN), "serve", "--help"], env=environ, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    for text in ("s3cret", "alice", "marker", "default: on", str(file)):
        assert text not in done.stdout
    for field in Settings.model_fields.values():
        assert option_of(field).env in done.stdout  # each setting names its variable


def test_docs_table_is_generated_from_the_declarations():
    path = Path(__file__).parents[1] / "docs" / "configuration.md"
    text = path.read_text()
    assert replace_table(text, path) == text, (
        "docs/configuration.md's settings table is stale: "
        "python -m porter_bundle.config --write docs/configuration.md"
    )
    for name in Settings.model_fields:
        assert f"| `{name}` |" in text
    # Each "see" link names a file beside it that has that section.
    links = re.findall(r"\(see \[([^]]+)\]\(([a-z]+\.md)#([a-z-]+)\)\)", text)
    assert len({title for title, _, _ in links}) >= 5
    for title, file, _ in links:
        assert f"# {title}\n" in (path.parent / file).read_text(), (title, file)
