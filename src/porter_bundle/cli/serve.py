"""``porter-bundle serve``: the gRPC server, until SIGTERM or SIGINT. Its flags are generated
from the settings' declarations (:mod:`porter_bundle.config.settings`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import click

from porter_bundle import config
from porter_bundle.cli.exit_codes import Exit

if TYPE_CHECKING:
    from porter_bundle.executor import Executor
    from porter_bundle.service.sources import SecretStore

log = logging.getLogger("porter_bundle")

# How long shutdown waits for blocking calls still running before it exits anyway.
DRAIN_SECONDS = 5.0
# How long the last threads (engine calls to a wedged engine, say) may take to end once the
# server has stopped, before the process exits without them.
LAST_THREADS_SECONDS = 1.0


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
    configure_logging(settings.log_level, settings.log_format)
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
        return Exit.USAGE
    return Exit.OK


def serve_flags(argv: Sequence[str]) -> dict[str, Any]:
    """The settings that ``serve ARGV`` gives as flags (for tests and tools)."""
    with serve.make_context("serve", list(argv)) as ctx:
        return config.flags_given(ctx.params)


async def _serve(settings: config.Settings) -> bool:
    """Serves until SIGTERM or SIGINT; True when every blocking call had ended at the stop."""
    from porter_bundle.api.server import start_server
    from porter_bundle.bundles.registry import RegistryClient
    from porter_bundle.config import load_registry_auths
    from porter_bundle.documents import SchemaCheck
    from porter_bundle.service import ActionSettings, Blocking, LeaseSettings, Services
    from porter_bundle.service.relay import EventRelay
    from porter_bundle.store import Database, Notifications

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
    executors: list[Executor] = []  # the one the services build on first use, closed at the end

    def make_executor() -> Executor:
        executors.append(build_executor(settings, registry_auth))
        return executors[-1]

    leases = LeaseSettings.from_settings(settings)
    log.info("replica id: %s", leases.replica_id)
    services = Services.create(
        store,
        executor=make_executor,
        action_settings=ActionSettings.from_settings(settings),
        secrets=secret_store(settings),
        schema_check=SchemaCheck.parse(settings.schema_check),
        registry=registry,
        blocking=blocking,
        output_retention_runs=settings.output_retention_runs,
        leases=leases,
    )
    # Replicas sharing a PostgreSQL database hear of each other's runs at once.
    relay = (
        None
        if store.is_sqlite
        else EventRelay(services.runs, Notifications(store), leases.replica_id)
    )
    if relay is not None:
        relay.start()
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
    # Beside the calls' grace: stop taking runs, hand back the pending ones, let runs end.
    await asyncio.gather(
        running.stop(settings.grace_seconds), services.actions.drain(settings.grace_seconds)
    )
    await services.actions.close()
    if relay is not None:
        relay.close()
    for executor in executors:
        aclose = getattr(executor, "aclose", None)  # runs go on; the next start recovers them
        if aclose is not None:
            with contextlib.suppress(Exception):
                await aclose()
    # The database is closed only once no worker uses it any more (recovery's reads included).
    drained = await blocking.aclose(DRAIN_SECONDS)
    if drained:
        store.close()
    else:
        log.warning("blocking calls still running %.0fs after shutdown; exiting", DRAIN_SECONDS)
    registry.close()
    log.info("stopped")
    return drained


def build_executor(
    settings: config.Settings, registry_auth: Mapping[str, tuple[str, str]]
) -> Executor:
    """The executor ``--executor`` names (blocking: the container one connects at once)."""
    if settings.executor == "kubernetes":
        from porter_bundle.executor.kubernetes import KubernetesExecutor

        return KubernetesExecutor(
            helper_image=settings.kubernetes_helper_image,
            kubeconfig=settings.kubeconfig,
            namespace=settings.kubernetes_namespace,
            service_account=settings.kubernetes_service_account,
            image_pull_secrets=tuple(sorted(settings.kubernetes_image_pull_secrets)),
            ttl_seconds=settings.kubernetes_job_ttl_seconds,
            start_timeout_seconds=settings.kubernetes_start_timeout_seconds,
            stop_grace_seconds=settings.cancel_grace_seconds,
        )
    from porter_bundle.executor import ContainerExecutor

    return ContainerExecutor(
        host=settings.container_host,
        pull_insecure_registries=settings.insecure_registries,
        registry_auth=registry_auth,
    )


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
