"""``porter-bundle keys``: the keys that encrypt secrets in the database.

``status`` lists the key ids and how many stored values each one sealed; ``rotate``
puts a new key first in the key file (the older ones stay, to decrypt); ``reencrypt``
rewrites every stored secret with the newest key, after which older keys may go.
Key values are never printed.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from porter_bundle import config
from porter_bundle.cli.exit_codes import Exit
from porter_bundle.cli.output import dump, output_option


@click.group(
    short_help="the keys of secrets at rest: status, rotate, reencrypt",
    help=(
        "Manage the encryption keys of secrets at rest. rotate puts a new key first in the "
        "key file (restart the server to use it); reencrypt then rewrites every stored "
        "secret with the newest key (safe while the server runs), after which older keys "
        "may be removed from the file; status shows the key ids and how many values each "
        "one encrypted."
    ),
)
def keys() -> None:
    """The ``keys`` group."""


# The same declarations, environment and config file as serve's.
_SETTINGS = config.setting_options(only=("database", "data_dir", "encryption_key_file"))


@keys.command(
    short_help="the key ids and how many stored values each encrypted",
    help="the key ids, newest first, and how many stored values each one encrypted",
)
@_SETTINGS
@output_option
def status(fmt: str, **params: Any) -> int:
    """``keys status``."""
    return run("status", params, fmt)


@keys.command(
    short_help="put a new key first in the key file",
    help="put a new key first in the key file (it encrypts from the next start)",
)
@_SETTINGS
def rotate(**params: Any) -> int:
    """``keys rotate``."""
    return run("rotate", params)


@keys.command(help="rewrite every stored secret with the newest key")
@_SETTINGS
def reencrypt(**params: Any) -> int:
    """``keys reencrypt``."""
    return run("reencrypt", params)


def run(action: str, params: dict[str, Any], fmt: str = "plaintext") -> int:
    """Runs one ``keys`` action; 2 on a key or database problem."""
    from porter_bundle import store

    try:
        settings = config.load_settings(
            config.flags_given(params), config_file=params["config_file"]
        )
    except config.SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return Exit.USAGE
    path = config.key_file_path(settings)
    try:
        if action == "rotate":
            if settings.encryption_key:
                raise store.KeyFileError(
                    f"the keys come from ${config.ENV_ENCRYPTION_KEY}: put a new key first there"
                )
            new = store.rotate_key_file(path)
            keyring = store.read_key_file(path)
            print(f"{path}: new key {new} encrypts from the next server start")
            print(f"keys (newest first): {', '.join(keyring.key_ids)}")
            print("then run `porter-bundle keys reencrypt` to rewrite stored secrets with it")
            return Exit.OK
        # Never creates a key file: a new key would decrypt nothing.
        keyring = (
            config.open_keyring(settings) if settings.encryption_key else store.read_key_file(path)
        )
    except store.KeyFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return Exit.USAGE
    db = store.Database(settings.database_url, keyring=keyring, pool_size=1)
    try:
        db.migrate()
        if action == "reencrypt":
            done = db.reencrypt()
            for column, count in done.items():
                print(f"{column}: {count} values re-encrypted with key {keyring.primary_id}")
            return Exit.OK
        usage = db.key_usage()
        if fmt != "plaintext":
            dump({"keys": list(keyring.key_ids), "values": usage}, fmt)
            return Exit.OK
        print(f"keys (newest first, the first encrypts): {', '.join(keyring.key_ids)}")
        for column, counts in usage.items():
            listed = ", ".join(f"{k}: {n}" for k, n in sorted(counts.items())) or "no values"
            print(f"{column}: {listed}")
        return Exit.OK
    except store.CryptoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return Exit.USAGE
    finally:
        db.close()
