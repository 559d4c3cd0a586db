"""The ``porter-bundle`` command. Logging is configured here and nowhere else."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from porter_bundle import __version__, config

if TYPE_CHECKING:
    from porter_bundle.service.sources import SecretStore

log = logging.getLogger("porter_bundle")

# How long shutdown waits for blocking calls still running before it exits anyway.
DRAIN_SECONDS = 5.0
# How long the last threads (engine calls to a wedged engine, say) may take to end once the
# server has stopped, before the process exits without them.
LAST_THREADS_SECONDS = 1.0


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
    )
    config.add_flags(serve)
    serve.set_defaults(refuse=serve.error)
    from porter_bundle import keys

    keys.register(sub)
    from porter_bundle import client
    from porter_bundle.auth import commands as auth_commands

    client.register(sub)
    auth_commands.register(sub)
    # Porter's own argument parsing, not argparse's: main() hands argv to agent.main first.
    sub.add_parser(
        "agent",
        help="the Porter operator's agent (Porter's commands and flags)",
        add_help=False,
    )
    return parser


async def _serve(settings: config.Settings) -> bool:
    """Serves until SIGTERM or SIGINT; True when every blocking call had ended at the stop."""
    from porter_bundle.api.server import start_server
    from porter_bundle.bundles.registry import RegistryClient
    from porter_bundle.config import load_registry_auths
    from porter_bundle.documents import SchemaCheck
    from porter_bundle.executor import ContainerExecutor
    from porter_bundle.service import ActionSettings, Blocking, Services
    from porter_bundle.store import Database

    # Handlers first: a SIGTERM that arrives while starting still stops us gracefully.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    registry_auth = load_registry_auths(settings.registry_config)
    registry = RegistryClient(insecure_hosts=settings.insecure_registries, auths=registry_auth)
    keyring = config.open_keyring(settings)
    # The one pool of every blocking call (service.blocking); the RPC handlers use it too.
    blocking = Blocking.with_workers(settings.workers)
    # Pooled connections in use at once: one per thread that calls the store, i.e. the pool's
    # workers, plus the event loop's thread, which runs reads inline on a local SQLite file.
    store = Database(settings.database_url, keyring=keyring, pool_size=settings.workers + 1)
    await blocking.run(store.migrate)
    services = Services.create(
        store,
        executor=lambda: ContainerExecutor(
            host=settings.container_host,
            pull_insecure_registries=settings.insecure_registries,
            registry_auth=registry_auth,
        ),
        action_settings=ActionSettings.from_settings(settings),
        secrets=secret_store(settings),
        schema_check=SchemaCheck.parse(settings.schema_check),
        registry=registry,
        blocking=blocking,
        output_retention_runs=settings.output_retention_runs,
    )
    running = await start_server(settings, services, blocking.pool)
    if running.legacy is not None:
        print(f"porter-bundle legacy listening on port {running.legacy_port}", flush=True)
    print(f"porter-bundle listening on port {running.port}", flush=True)
    recovery = asyncio.create_task(services.actions.recover(), name="recover-runs")
    await stop.wait()
    log.info("shutting down (grace period %.1fs)", settings.grace_seconds)
    recovery.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await recovery
    await running.stop(settings.grace_seconds)
    await services.actions.close()
    # The database is closed only once no worker uses it any more (recovery's reads included).
    drained = await blocking.aclose(DRAIN_SECONDS)
    if drained:
        store.close()
    else:
        log.warning("blocking calls still running %.0fs after shutdown; exiting", DRAIN_SECONDS)
    registry.close()
    log.info("stopped")
    return drained


def _exit_now_if_threads_linger() -> None:
    """Exits at once when threads still run (a call blocked on a wedged engine, say) instead
    of letting the interpreter wait for them: SIGTERM stops the server within its grace
    period and a few seconds, whatever the engine does. Everything that matters is written
    by then (each store write is its own committed transaction)."""
    deadline = time.monotonic() + LAST_THREADS_SECONDS
    for thread in threading.enumerate():
        if thread is threading.main_thread() or thread.daemon:
            continue
        thread.join(max(0.0, deadline - time.monotonic()))
    lingering = [
        t.name
        for t in threading.enumerate()
        if t is not threading.main_thread() and not t.daemon and t.is_alive()
    ]
    if lingering:
        log.warning(
            "exiting with %d threads still blocked (%s)",
            len(lingering),
            ", ".join(sorted(set(lingering)))[:500],
        )
        logging.shutdown()
        os._exit(0)


def secret_store(settings: config.Settings) -> SecretStore:
    """The store ``secret: X`` sources are read from (``--secret-store``)."""
    from pathlib import Path

    from porter_bundle.service.kube_secrets import KubernetesSecretStore, in_cluster_api
    from porter_bundle.service.sources import DirectorySecretStore

    if settings.secret_store == "kubernetes":
        return KubernetesSecretStore(
            settings.kubernetes_api or in_cluster_api(),
            token_file=Path(settings.kubernetes_token_file),
        )
    return DirectorySecretStore(settings.secrets_path)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["agent"]:
        from porter_bundle import agent

        return agent.main(argv[1:])
    parser = _parser()
    args = parser.parse_args(argv)
    settings: config.Settings | None = None
    if args.command == "serve":
        try:
            settings = config.load_settings(config.flags_given(args), config_file=args.config_file)
        except config.SettingsError as exc:
            args.refuse(str(exc))  # exits 2, as for any bad flag
    # The secrets of running actions never reach a log line (nor a traceback).
    from porter_bundle.observability.logs import configure

    configure(
        settings.log_level if settings else "WARNING", settings.log_format if settings else "text"
    )
    if settings is None:
        code: int = args.func(args)
        return code
    log.info("database: %s", config.redact_url(settings.database_url))
    try:
        from porter_bundle.auth.exposure import check_exposure

        check_exposure(
            settings.address, authenticated=settings.authenticates, insecure=settings.insecure
        )
        asyncio.run(_serve(settings))
        _exit_now_if_threads_linger()
    except ValueError as exc:  # a setting that cannot be used, e.g. an unreadable registry config
        log.error("%s", exc)
        return 2
    return 0
