"""Client commands of the ``porter-bundle`` CLI: they talk to a running server over gRPC.

Each command module exposes ``register(subparsers)``, which adds its subcommand(s) and sets
``func`` on them: a callable taking the parsed arguments and returning the exit code.
"""

from __future__ import annotations

import argparse
import os

ENV_SERVER = "PORTER_BUNDLE_SERVER"
DEFAULT_SERVER = "127.0.0.1:3001"


def add_server_flag(parser: argparse.ArgumentParser) -> None:
    """``--server``: where the server listens (env PORTER_BUNDLE_SERVER), and how to connect
    (TLS, bearer token: :mod:`porter_bundle.client.connection`)."""
    parser.add_argument(
        "--server",
        default=os.environ.get(ENV_SERVER, DEFAULT_SERVER),
        help=f"host:port of the porter-bundle server (env {ENV_SERVER})",
    )
    from porter_bundle.client.connection import add_connection_flags

    add_connection_flags(parser)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Adds every client command."""
    # Each issue's commands live in their own module and register here.
    from porter_bundle.client import apply, follow

    apply.register(subparsers)
    follow.register(subparsers)
    # Issue 4: bundles in OCI registries.
    from porter_bundle.client import publish

    publish.register(subparsers)
