"""``porter-bundle serve``: the gRPC server, until SIGTERM or SIGINT. Its flags are generated
from the settings' declarations (:mod:`porter_bundle.config.settings`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Sequence
from typing import Any

import click

from porter_bundle import config
from porter_bundle.cli.exit_codes import Exit

log = logging.getLogger("porter_bundle")

# How long shutdown waits for blocking calls still running before it exits anyway.
DRAIN_SECONDS = 5.0


@click.command(
    cls=config.GroupedCommand,
    short_help="run the gRPC server",
    help=(
        "Run the porter.bundle.v1.PorterBundle gRPC server, with grpc.health.v1 and server "
        "reflection, until SIGTERM or SIGINT (then stop gracefully)."
    ),
)
@config.setting_options()
def serve(**params: Any) -> int:
    """Loads the settings (flag > environment > config file > default) and serves."""
    from porter_bundle.cli.main import configure_logging

    try:
        settings = config.load_settings(
            config.flags_given(params), config_file=params["config_file"]
        )
    except config.SettingsError as exc:
        raise click.UsageError(str(exc)) from None
    configure_logging(settings.log_level)
    log.info("database: %s", config.redact_url(settings.database_url))
    try:
        from porter_bundle.auth.exposure import check_exposure

        check_exposure(
            settings.address, authenticated=settings.authenticates, insecure=settings.insecure
        )
        asyncio.run(_serve(settings))
    except ValueError as exc:  # a setting that cannot be used, e.g. an unreadable registry config
        log.error("%s", exc)
        return Exit.USAGE
    return Exit.OK


def serve_flags(argv: Sequence[str]) -> dict[str, Any]:
    """The settings that ``serve ARGV`` gives as flags (for tests and tools)."""
    with serve.make_context("serve", list(argv)) as ctx:
        return config.flags_given(ctx.params)


async def _serve(settings: config.Settings) -> None:
    from porter_bundle.api.server import start_server
    from porter_bundle.bundles.registry import RegistryClient
    from porter_bundle.config import load_registry_auths
    from porter_bundle.documents import SchemaCheck
    from porter_bundle.executor import ContainerExecutor
    from porter_bundle.service import ActionSettings, Blocking, Services
    from porter_bundle.service.sources import DirectorySecretStore
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
        secrets=DirectorySecretStore(settings.secrets_path),
        schema_check=SchemaCheck.parse(settings.schema_check),
        registry=registry,
        blocking=blocking,
    )
    running = await start_server(settings, services, blocking.pool)
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
    if await blocking.aclose(DRAIN_SECONDS):
        store.close()
    else:
        log.warning("blocking calls still running %.0fs after shutdown; exiting", DRAIN_SECONDS)
    registry.close()
    log.info("stopped")
