"""Secret columns are encrypted in the database, whatever wrote them, and keys rotate."""

from __future__ import annotations

import json
import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from google.protobuf.struct_pb2 import Value
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError

from porter.bundle.v1.installation_pb2 import BundleReference, Installation
from porter.bundle.v1.run_pb2 import ACTION_INSTALL, RUN_STATE_SUCCEEDED
from porter.bundle.v1.value_set_pb2 import CredentialSet, NamedValueSource, ValueSource
from porter_bundle import config, store
from porter_bundle.service import Services
from porter_bundle.service.runs import NewRun, OutputValue
from porter_bundle.store import SECRET_COLUMNS, Database, KeyFileError, Keyring, UnknownKey
from porter_bundle.store.crypto import (
    create_key_file,
    is_encrypted,
    new_key,
    read_key_file,
    rotate_key_file,
    stored_key_id,
)
from porter_bundle.store.migrate import alembic_config, upgrade
from porter_bundle.store.secrets import reseal
from tests.helpers import sensitive_bundle

NS, NAME = "team", "app"
CREDENTIAL = "cred-Zx81-literal-credential"
PARAMETER = "param-Qv27-sensitive-parameter"
OUTPUT = "output-Lm55-sensitive-output"
WRITTEN = "0.25000000000000000000007731"  # how the bundle wrote a sensitive number
INSTALLATION_PARAMETER = "inst-Wq63-sensitive-installation-parameter"
PUBLIC = "public-value-Kk09"


def _scenario(s: Database) -> str:
    """Writes one secret of each column through the services; returns the run ID."""
    services = Services.create(s)
    services.credential_sets.create(
        CredentialSet(
            namespace=NS,
            name="creds",
            credentials=[
                NamedValueSource(
                    name="token", source=ValueSource(value=Value(string_value=CREDENTIAL))
                )
            ],
        )
    )
    services.bundles.create("r.example.com/b:v1", json.dumps(sensitive_bundle("b")))
    inst = Installation(
        namespace=NS, name=NAME, bundle=BundleReference(repository="r.example.com/b", tag="v1")
    )
    inst.parameters.update({"password": INSTALLATION_PARAMETER, "color": PUBLIC})
    services.installations.create(inst)
    run, _ = services.runs.create(
        NS,
        NAME,
        NewRun(
            action=ACTION_INSTALL,
            parameters={"password": PARAMETER, "size": PUBLIC},
            sensitive_parameters=frozenset({"password"}),
        ),
    )
    services.runs.start(run.id)
    services.runs.finish(
        run.id,
        RUN_STATE_SUCCEEDED,
        "",
        [
            OutputValue("token", OUTPUT, "string", True),
            OutputValue("endpoint", PUBLIC, "string", False),
            OutputValue("ratio", 0.25, "number", True, written=WRITTEN),
        ],
    )
    return run.id


def _raw(s: Database) -> list[bytes | str]:
    """The stored form of every secret column value."""
    found: list[bytes | str] = []
    with s.engine.connect() as conn:
        for col in SECRET_COLUMNS:
            stmt = select(col.table.c[col.column])
            if col.where is not None:
                stmt = stmt.where(col.where())
            found += [v if isinstance(v, str) else bytes(v) for (v,) in conn.execute(stmt)]
    return found


def _read_back(s: Database, run_id: str, *, installation: bool = True) -> None:
    services = Services.create(s)
    full = services.credential_sets.get_full(NS, "creds")
    assert full is not None and full.credentials[0].source.value.string_value == CREDENTIAL
    assert services.runs.run_parameters(run_id) == {"password": PARAMETER, "size": PUBLIC}
    latest = {
        v.name: v.value.string_value
        for v in services.legacy.latest_outputs(NS, NAME, reveal_sensitive=True)
    }
    # Without the later columns (downgraded to before them), "ratio" renders from its value.
    assert (latest["token"], latest["ratio"]) == (OUTPUT, WRITTEN if installation else "0.25")
    with s.read() as conn:
        values = store.list_output_values(conn, run_id)
    assert values == [
        ("endpoint", False, f'"{PUBLIC}"'),
        ("ratio", True, "0.25"),
        ("token", True, f'"{OUTPUT}"'),
    ]
    if not installation:
        return
    inst = services.installations.get(NS, NAME, reveal=True)
    assert dict(inst.parameters) == {"password": INSTALLATION_PARAMETER, "color": PUBLIC}


@pytest.fixture
def fresh(database_url: str) -> Iterator[Database]:
    s = Database(database_url, keyring=Keyring.generate())
    yield s
    s.close()


def test_secret_columns_are_encrypted_and_read_back_clear(store: Database, db_path: Path):
    run_id = _scenario(store)
    raw = _raw(store)
    assert len(raw) == 6 and all(is_encrypted(v) for v in raw)
    assert {stored_key_id(v) for v in raw} == {store.keyring.primary_id}
    _read_back(store, run_id)
    if store.is_sqlite:
        store.close()
        data = b"".join(p.read_bytes() for p in (db_path, Path(f"{db_path}-wal")) if p.exists())
        for secret in (CREDENTIAL, PARAMETER, OUTPUT, WRITTEN, INSTALLATION_PARAMETER):
            assert secret.encode() not in data
        assert PUBLIC.encode() in data  # public values stay readable (and prove the grep works)


def test_clear_values_from_before_encryption_are_read_and_encrypted_on_upgrade(fresh: Database):
    upgrade(fresh.engine)
    run_id = _scenario(fresh)
    # Make the rows what a server before encryption wrote: clear values.
    with fresh.engine.begin() as conn:
        for col in SECRET_COLUMNS:
            keys = ", ".join(col.primary_key)
            rows = conn.execute(text(f'SELECT {keys}, "{col.column}" FROM {col.table.name}'))
            for *key, stored in rows.all():
                if stored is None:
                    continue
                stored = stored if isinstance(stored, str) else bytes(stored)
                if not is_encrypted(stored):
                    continue
                clear: bytes | str = col.open(fresh.keyring, key, stored)
                if not col.binary:
                    clear = clear.decode()  # type: ignore[union-attr]
                where = " AND ".join(f"{c} = :k{i}" for i, c in enumerate(col.primary_key))
                params = {f"k{i}": v for i, v in enumerate(key)}
                conn.execute(
                    text(f'UPDATE {col.table.name} SET "{col.column}" = :v WHERE {where}'),
                    {"v": clear, **params},
                )
    assert not any(is_encrypted(v) for v in _raw(fresh))
    _read_back(fresh, run_id)  # read through
    assert fresh.key_usage()["runs.parameters"] == {"clear": 1}
    # Back to what a server before encryption had (the installation column comes later).
    command.downgrade(alembic_config(fresh.engine), "0004")

    fresh.migrate()  # 0004 -> head encrypts them
    assert all(is_encrypted(v) for v in _raw(fresh))
    _read_back(fresh, run_id, installation=False)  # its values left with the column
    fresh.migrate()  # at head already: nothing to do
    assert fresh.prepare_encryption() == 0


def test_reencrypt_moves_every_value_to_the_newest_key(database_url: str):
    old_key = new_key()
    old = Keyring([old_key])
    first = Database(database_url, keyring=old)
    first.migrate()
    run_id = _scenario(first)
    first.close()
    rotated = Keyring([new_key(), old_key])
    s = Database(database_url, keyring=rotated)
    try:
        _read_back(s, run_id)  # old rows still decrypt
        assert s.key_usage()["value_sets.values"] == {old.primary_id: 1}
        done = s.reencrypt(batch_size=1)
        assert done == {
            "value_sets.values": 1,
            "runs.parameters": 1,
            "outputs.value": 2,
            "outputs.written": 1,
            "installations.secret_parameters": 1,
        }
        assert {stored_key_id(v) for v in _raw(s)} == {rotated.primary_id}
        assert s.reencrypt() == dict.fromkeys(done, 0)
        _read_back(s, run_id)
    finally:
        s.close()
    stale = Database(database_url, keyring=old)
    try:
        with pytest.raises(UnknownKey):
            _read_back(stale, run_id)
    finally:
        stale.close()


# --- key files and settings ---------------------------------------------------------------


def test_default_key_file_is_created_0600_beside_the_database_and_announced(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    db = tmp_path / "data" / "pb.db"
    settings = config.Settings(database=config.sqlite_url(db))
    with caplog.at_level(logging.WARNING, logger="porter_bundle.config"):
        ring = config.open_keyring(settings)
    key_file = Path(f"{db.resolve()}.key")
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert read_key_file(key_file).primary_id == ring.primary_id
    assert str(key_file) in caplog.text and ring.primary_id in caplog.text
    assert key_file.read_text().strip() not in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="porter_bundle.config"):
        again = config.open_keyring(settings)  # found, not created again
    assert again.primary_id == ring.primary_id and not caplog.text


def test_key_file_in_the_data_dir_for_other_databases(tmp_path, monkeypatch):
    monkeypatch.setenv(config.ENV_DATA_DIR, str(tmp_path / "dd"))
    assert config.default_key_file("postgresql+psycopg://u@h/db") == tmp_path / "dd" / (
        config.DATA_DIR_KEY_FILE
    )


def test_key_file_readable_by_others_is_refused(tmp_path: Path):
    path = tmp_path / "k"
    ring = create_key_file(path)
    assert read_key_file(path).primary_id == ring.primary_id
    os.chmod(path, 0o640)
    with pytest.raises(KeyFileError, match=r"0640.*chmod 600"):
        read_key_file(path)
    settings = config.Settings(database="sqlite:///x.db", encryption_key_file=str(path))
    with pytest.raises(KeyFileError):
        config.open_keyring(settings)


def test_named_key_file_must_exist_and_hold_keys(tmp_path: Path):
    with pytest.raises(KeyFileError, match="does not exist"):
        read_key_file(tmp_path / "missing")
    bad = tmp_path / "bad"
    bad.write_text("# comment\nnot base64!\n")
    bad.chmod(0o600)
    with pytest.raises(KeyFileError, match="line 2") as err:
        read_key_file(bad)
    assert "not base64!" not in str(err.value)
    empty = tmp_path / "empty"
    empty.write_text("# nothing\n\n")
    empty.chmod(0o600)
    with pytest.raises(KeyFileError, match="no key"):
        read_key_file(empty)


def test_rotate_puts_a_new_key_first_and_keeps_the_old(tmp_path: Path):
    path = tmp_path / "k"
    old = create_key_file(path)
    new_id = rotate_key_file(path)
    ring = read_key_file(path)
    assert ring.key_ids == [new_id, old.primary_id]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_keys_from_the_environment_setting(tmp_path: Path):
    import base64

    a, b = new_key(), new_key()
    settings = config.Settings(
        database=config.sqlite_url(tmp_path / "x.db"),
        encryption_key=f"{base64.b64encode(a).decode()}, {base64.b64encode(b).decode()}",
    )
    ring = config.open_keyring(settings)
    assert ring.key_ids == [Keyring([a]).primary_id, Keyring([b]).primary_id]
    assert not Path(f"{tmp_path / 'x.db'}.key").exists()
    with pytest.raises(KeyFileError, match="key 1") as err:
        config.open_keyring(config.Settings(encryption_key="secret-but-not-a-key"))
    assert "secret-but-not-a-key" not in str(err.value)


def test_reencrypt_leaves_a_row_that_changed_since_it_was_read(store: Database):
    _scenario(store)
    [(set_id, stored)] = _rows(store, "value_sets", "id", "values")
    col = SECRET_COLUMNS[0]
    assert col.name == "value_sets.values"
    # A value read before a concurrent update: the rewrite must not bring it back.
    outdated = col.seal(store.keyring, [set_id], b"what the set held before")
    assert reseal(store, col, [(set_id, outdated)]) == 0
    assert _rows(store, "value_sets", "id", "values") == [(set_id, stored)]
    assert reseal(store, col, [(set_id, stored)]) == 1


def _rows(s: Database, table: str, *columns: str) -> list[tuple[object, ...]]:
    quoted = ", ".join(f'"{c}"' for c in columns)
    with s.engine.connect() as conn:
        return [
            tuple(bytes(v) if isinstance(v, memoryview) else v for v in row)
            for row in conn.execute(text(f"SELECT {quoted} FROM {table}"))
        ]


def test_sql_errors_never_show_bound_values(store: Database):
    with pytest.raises(IntegrityError) as err, store.engine.begin() as conn:
        conn.execute(text("INSERT INTO runs (id) VALUES (:v)"), {"v": "secret-in-sql-Xy01"})
    # What SQLAlchemy adds to the driver's message: the statement, not its values.
    added = str(err.value).partition("[SQL:")[2]
    assert "hide_parameters" in added and "secret-in-sql-Xy01" not in added
    if store.is_sqlite:
        assert "secret-in-sql-Xy01" not in str(err.value)
    # PostgreSQL's own message details the failing row, values included: why secret
    # columns are encrypted before any statement carries them.
