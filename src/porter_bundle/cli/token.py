"""``porter-bundle token``: make bearer tokens and the hashes the server's token file holds."""

from __future__ import annotations

import secrets
import sys

import click
import yaml

from porter_bundle.auth.roles import ROLES
from porter_bundle.auth.tokens import hash_token
from porter_bundle.cli.exit_codes import Exit


@click.group(short_help="make bearer tokens and token file entries")
def token() -> None:
    """Make bearer tokens and the entries of the server's token file (--token-file)."""


@token.command(
    "hash",
    short_help="print the sha256:<hex> of a token read from standard input",
    help="Reads a token from standard input (one line) and prints its hash.",
)
def hash_command() -> int:
    """``token hash``."""
    value = sys.stdin.readline().strip()
    if not value:
        click.echo("error: no token on standard input", err=True)
        return Exit.USAGE
    click.echo(hash_token(value))
    return Exit.OK


@token.command(
    short_help="make a new random token and its token file entry",
    help=(
        "Prints a new random token (give it to the client; it is stored nowhere) and, on "
        "standard error, the token file entry to add for it."
    ),
)
@click.argument("name")
@click.option(
    "--role",
    "bindings",
    multiple=True,
    metavar="ROLE=NS[,NS...]",
    help=f'a role binding, repeatable; roles: {", ".join(ROLES)}; namespace "*" = all',
)
def new(name: str, bindings: tuple[str, ...]) -> int:
    """``token new NAME``."""
    roles: dict[str, list[str]] = {}
    for binding in bindings:
        role, sep, namespaces = binding.partition("=")
        if not sep or role not in ROLES:
            click.echo(
                f"error: --role {binding!r}: want ROLE=NS[,NS...] with ROLE one of {', '.join(ROLES)}",
                err=True,
            )
            return Exit.USAGE
        roles.setdefault(role, []).extend(n.strip() for n in namespaces.split(","))
    value = secrets.token_urlsafe(32)
    entry = [{"name": name, "token": hash_token(value), "roles": roles}]
    click.echo(value)
    click.echo("# add to the token file:", err=True)
    click.echo(yaml.safe_dump(entry, sort_keys=False).rstrip(), err=True)
    return Exit.OK
