"""The ``porter-bundle`` command. Logging is configured here and nowhere else."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Sequence

from porter_bundle import __version__, config

log = logging.getLogger("porter_bundle")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="porter-bundle",
        description="Manage Cloud Native Application Bundles over gRPC, the way Porter does.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser(
        "serve",
        help="run the gRPC server",
        description=(
            "Run the porter.bundle.v1.PorterBundle gRPC server, with grpc.health.v1 and server "
            "reflection, until SIGTERM or SIGINT (then stop gracefully)."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    serve.add_argument(
        "--address",
        default=os.environ.get(config.ENV_ADDRESS, config.DEFAULT_ADDRESS),
        help=f"host:port to listen on; port 0 picks a free port (env {config.ENV_ADDRESS})",
    )
    serve.add_argument(
        "--database",
        default=os.environ.get(config.ENV_DATABASE, ""),
        help=(
            "SQLAlchemy URL of the database, e.g. sqlite:////var/lib/porter-bundle/db.sqlite or "
            "postgresql+psycopg://user:pass@host/db; default: the SQLite file "
            f"{config.DATABASE_FILE} in the data directory ${config.ENV_DATA_DIR}, else "
            f"$XDG_DATA_HOME/porter-bundle, else ~/.local/share/porter-bundle, created if missing "
            f"(env {config.ENV_DATABASE})"
        ),
    )
    serve.add_argument(
        "--grace-period",
        type=float,
        default=config.DEFAULT_GRACE_SECONDS,
        help="seconds in-flight calls may take to finish after SIGTERM",
    )
    serve.add_argument(
        "--workers", type=int, default=config.DEFAULT_WORKERS, help="threads for database work"
    )
    serve.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return parser


async def _serve(settings: config.Settings) -> None:
    from porter_bundle.api.server import start_server
    from porter_bundle.service import Services
    from porter_bundle.store import Store

    # Handlers first: a SIGTERM that arrives while starting still stops us gracefully.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    store = Store(settings.database_url)
    await asyncio.to_thread(store.migrate)
    running = await start_server(settings, Services.create(store))
    print(f"porter-bundle listening on port {running.port}", flush=True)
    await stop.wait()
    log.info("shutting down (grace period %.1fs)", settings.grace_seconds)
    await running.stop(settings.grace_seconds)
    store.close()
    log.info("stopped")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if args.command == "serve":
        settings = config.Settings(
            address=args.address,
            database=args.database,
            grace_seconds=args.grace_period,
            workers=args.workers,
        )
        log.info("database: %s", _redact_url(settings.database_url))
        asyncio.run(_serve(settings))
    return 0


def _redact_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
