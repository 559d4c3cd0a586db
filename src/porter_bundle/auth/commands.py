"""``porter-bundle token``: make tokens and the hashes the token file holds."""

from __future__ import annotations

import argparse
import secrets
import sys

import yaml

from porter_bundle.auth.roles import ROLES
from porter_bundle.auth.tokens import hash_token


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Adds ``token hash`` and ``token new``."""
    token = subparsers.add_parser("token", help="make bearer tokens and token file entries")
    sub = token.add_subparsers(dest="token_command", required=True)
    hashed = sub.add_parser(
        "hash",
        help="print the sha256:<hex> of a token read from standard input",
        description="Reads a token from standard input (one line) and prints its hash.",
    )
    hashed.set_defaults(func=_hash)
    new = sub.add_parser(
        "new",
        help="make a new random token and its token file entry",
        description=(
            "Prints a new random token (give it to the client; it is stored nowhere) and, on "
            "standard error, the token file entry to add for it."
        ),
    )
    new.add_argument("name", help="the principal's name")
    new.add_argument(
        "--role",
        action="append",
        default=[],
        metavar="ROLE=NS[,NS...]",
        help=f'a role binding, repeatable; roles: {", ".join(ROLES)}; namespace "*" = all',
    )
    new.set_defaults(func=_new)


def _hash(args: argparse.Namespace) -> int:
    del args
    token = sys.stdin.readline().strip()
    if not token:
        print("error: no token on standard input", file=sys.stderr)
        return 2
    print(hash_token(token))
    return 0


def _new(args: argparse.Namespace) -> int:
    roles: dict[str, list[str]] = {}
    for binding in args.role:
        role, sep, namespaces = binding.partition("=")
        if not sep or role not in ROLES:
            print(
                f"error: --role {binding!r}: want ROLE=NS[,NS...] with ROLE one of {', '.join(ROLES)}",
                file=sys.stderr,
            )
            return 2
        roles.setdefault(role, []).extend(n.strip() for n in namespaces.split(","))
    token = secrets.token_urlsafe(32)
    entry = [{"name": args.name, "token": hash_token(token), "roles": roles}]
    print(token)
    print("# add to the token file:", file=sys.stderr)
    print(yaml.safe_dump(entry, sort_keys=False).rstrip(), file=sys.stderr)
    return 0
