"""``porter-bundle keys status|rotate|reencrypt`` and the serve command's key settings."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from porter.bundle.v1.installation_pb2 import BundleReference, Installation
from porter.bundle.v1.run_pb2 import ACTION_INSTALL, RUN_STATE_SUCCEEDED
from porter_bundle import config
from porter_bundle.cli import main
from porter_bundle.service import Services
from porter_bundle.service.runs import NewRun, OutputValue
from porter_bundle.store import Database, read_key_file

SECRET = "pw-Zr61-secret"


def _seed(db: Path) -> Path:
    """A database with one encrypted run parameter and output; returns its default key file."""
    settings = config.Settings(database=config.sqlite_url(db))
    store = Database(settings.database_url, keyring=config.open_keyring(settings))
    store.migrate()
    services = Services.create(store)
    services.installations.create(
        Installation(namespace="", name="app", bundle=BundleReference(repository="r/b", tag="1"))
    )
    run, _ = services.runs.create(
        "",
        "app",
        NewRun(
            action=ACTION_INSTALL,
            parameters={"pw": SECRET},
            sensitive_parameters=frozenset({"pw"}),
        ),
    )
    services.runs.start(run.id)
    services.runs.finish(run.id, RUN_STATE_SUCCEEDED, "", [OutputValue("o", SECRET, "", True)])
    store.close()
    return Path(f"{db.resolve()}.key")


def test_status_rotate_reencrypt(tmp_path: Path, capsys):
    db = tmp_path / "pb.db"
    key_file = _seed(db)
    first = read_key_file(key_file).primary_id
    url = config.sqlite_url(db)

    assert main(["keys", "status", "--database", url]) == 0
    out = capsys.readouterr().out
    assert f"keys (newest first, the first encrypts): {first}" in out
    assert f"runs.parameters: {first}: 1" in out and f"outputs.value: {first}: 1" in out

    assert main(["keys", "rotate", "--database", url]) == 0
    out = capsys.readouterr().out
    ring = read_key_file(key_file)
    assert ring.key_ids[1] == first and f"new key {ring.primary_id}" in out
    assert oct(os.stat(key_file).st_mode & 0o777) == "0o600"

    assert main(["keys", "reencrypt", "--database", url]) == 0
    out = capsys.readouterr().out
    assert f"runs.parameters: 1 values re-encrypted with key {ring.primary_id}" in out

    assert main(["keys", "status", "--database", url, "--encryption-key-file", str(key_file)]) == 0
    out = capsys.readouterr().out
    assert f"runs.parameters: {ring.primary_id}: 1" in out and first + ": " not in out
    assert SECRET not in out
    for line in key_file.read_text().splitlines():
        assert line not in out  # key values are never printed


def test_status_as_yaml(tmp_path: Path, capsys):
    import yaml

    key_file = _seed(tmp_path / "pb.db")
    url = config.sqlite_url(tmp_path / "pb.db")
    assert main(["keys", "status", "--database", url, "-o", "yaml"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    primary = read_key_file(key_file).primary_id
    assert shown["keys"] == [primary]
    assert shown["values"]["runs.parameters"] == {primary: 1}


def test_missing_or_open_key_file_is_an_error(tmp_path: Path, capsys):
    db = tmp_path / "pb.db"
    url = config.sqlite_url(db)
    assert main(["keys", "status", "--database", url]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not Path(f"{db}.key").exists()  # status never creates a key
    key_file = _seed(db)
    key_file.chmod(0o644)
    assert main(["keys", "reencrypt", "--database", url]) == 2
    assert re.search(r"mode 0644.*chmod 600", capsys.readouterr().err)


def test_serve_refuses_a_key_file_others_can_read(tmp_path: Path, caplog):
    key_file = _seed(tmp_path / "pb.db")
    key_file.chmod(0o604)
    code = main(
        [
            "serve",
            "--address",
            "127.0.0.1:0",
            "--database",
            config.sqlite_url(tmp_path / "pb.db"),
            "--encryption-key-file",
            str(key_file),
        ]
    )
    assert code == 2
    assert "mode 0604" in caplog.text


def test_serve_help_names_the_key_settings(capsys):
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    out = capsys.readouterr().out
    assert "--encryption-key-file" in out and "PORTER_BUNDLE_ENCRYPTION_KEY" in out
