"""Settings helpers: registry credentials from a docker config.json."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from porter_bundle.cli import main
from porter_bundle.config import load_registry_auths


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
