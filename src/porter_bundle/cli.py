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
    serve.add_argument(
        "--container-host",
        default=os.environ.get(config.ENV_CONTAINER_HOST) or None,
        help=(
            "Docker Engine API endpoint of Docker or Podman, e.g. unix:///run/podman/podman.sock "
            f"(env {config.ENV_CONTAINER_HOST}); default: DOCKER_HOST, then the usual sockets"
        ),
    )
    serve.add_argument(
        "--run-timeout",
        type=float,
        default=config.DEFAULT_RUN_TIMEOUT_SECONDS,
        help="seconds a run may take before it is stopped and fails",
    )
    serve.add_argument(
        "--max-concurrent-runs",
        type=int,
        default=config.DEFAULT_MAX_CONCURRENT_RUNS,
        help="containers running at once; further runs wait PENDING",
    )
    serve.add_argument(
        "--cancel-grace",
        type=float,
        default=config.DEFAULT_CANCEL_GRACE_SECONDS,
        help="seconds between SIGTERM and SIGKILL when a run is canceled",
    )
    serve.add_argument(
        "--container-network",
        default=None,
        help="network mode for invocation images (e.g. bridge); default: no network",
    )
    serve.add_argument(
        "--insecure-registry",
        action="append",
        default=[h for h in os.environ.get(config.ENV_INSECURE_REGISTRIES, "").split(",") if h],
        metavar="HOST[:PORT]",
        help=f"a registry reached over plain HTTP; repeatable (env {config.ENV_INSECURE_REGISTRIES}, comma-separated)",
    )
    serve.add_argument(
        "--registry-config",
        default=os.environ.get(config.ENV_REGISTRY_CONFIG, ""),
        help=f"a docker config.json whose auths give registry credentials (env {config.ENV_REGISTRY_CONFIG})",
    )
    serve.add_argument(
        "--secrets-dir",
        default="",
        help="directory of the built-in secret store, one file per secret; default: <data dir>/secrets",
    )
    serve.add_argument(
        "--legacy-reveal-sensitive",
        action="store_true",
        default=config.env_flag(config.ENV_LEGACY_REVEAL_SENSITIVE),
        help=(
            "porter.v1alpha1.Porter (the Porter operator's API) returns sensitive output values "
            "instead of omitting them; only for a trusted in-cluster deployment "
            f"(env {config.ENV_LEGACY_REVEAL_SENSITIVE}=true)"
        ),
    )
    serve.add_argument(
        "--stream-heartbeat",
        type=_positive_seconds,
        default=config.DEFAULT_STREAM_HEARTBEAT_SECONDS,
        metavar="SECONDS",
        help=(
            "live streams (WatchInstallationRuns, StreamRunLogs) idle this long send a heartbeat, "
            "so proxies with idle timeouts keep them open"
        ),
    )
    serve.add_argument(
        "--schema-check",
        type=str.lower,
        choices=config.SCHEMA_CHECKS,
        default=os.environ.get(config.ENV_SCHEMA_CHECK, config.DEFAULT_SCHEMA_CHECK).lower(),
        help=(
            "how strictly a Porter document's schemaVersion must match the supported versions: "
            "exact, minor or major (the same MAJOR.MINOR or MAJOR, with a warning), or none "
            f"(env {config.ENV_SCHEMA_CHECK})"
        ),
    )
    # Encryption of secrets at rest (issue 7): the key file flag, and the `keys` command.
    serve.add_argument(
        "--encryption-key-file",
        default=os.environ.get(config.ENV_ENCRYPTION_KEY_FILE, ""),
        metavar="PATH",
        help=(
            "file of the keys that encrypt secrets in the database (base64, one a line, newest "
            "first, mode 0600); default: <database file>.key beside a SQLite database, else "
            f"{config.DATA_DIR_KEY_FILE} in the data directory, created when missing "
            f"(env {config.ENV_ENCRYPTION_KEY_FILE}; or the keys themselves in "
            f"{config.ENV_ENCRYPTION_KEY})"
        ),
    )
    from porter_bundle import keys

    keys.register(sub)
    _add_security_flags(serve)
    from porter_bundle import client
    from porter_bundle.auth import commands as auth_commands

    client.register(sub)
    auth_commands.register(sub)
    serve.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return parser


# --- security flags (issue 7) ----------------------------------------------------------


def _add_security_flags(serve: argparse.ArgumentParser) -> None:
    env = os.environ.get
    group = serve.add_argument_group("security (authentication, authorization, TLS, audit)")
    group.add_argument(
        "--token-file",
        default=env(config.ENV_TOKEN_FILE, ""),
        help=(
            "YAML or JSON token file: principals, sha256 of their bearer tokens, role bindings "
            f"per namespace; re-read when it changes (env {config.ENV_TOKEN_FILE})"
        ),
    )
    group.add_argument(
        "--tls-cert",
        default=env(config.ENV_TLS_CERT, ""),
        help=f"PEM certificate of the server: serve TLS (env {config.ENV_TLS_CERT})",
    )
    group.add_argument(
        "--tls-key",
        default=env(config.ENV_TLS_KEY, ""),
        help=f"PEM private key of --tls-cert (env {config.ENV_TLS_KEY})",
    )
    group.add_argument(
        "--tls-client-ca",
        default=env(config.ENV_TLS_CLIENT_CA, ""),
        help=(
            "PEM CA of client certificates: mutual TLS, the certificate's subject CN is the "
            f"principal (env {config.ENV_TLS_CLIENT_CA})"
        ),
    )
    group.add_argument(
        "--insecure",
        action="store_true",
        default=config.env_flag(config.ENV_INSECURE),
        help=(
            "allow listening on a non-loopback address without authentication; every caller "
            f"may then do everything (env {config.ENV_INSECURE}=true)"
        ),
    )
    group.add_argument(
        "--reflection-requires-auth",
        action="store_true",
        default=config.env_flag(config.ENV_REFLECTION_REQUIRES_AUTH),
        help=(
            "server reflection needs credentials too; health checks never do "
            f"(env {config.ENV_REFLECTION_REQUIRES_AUTH}=true)"
        ),
    )
    group.add_argument(
        "--audit-log",
        default=env(config.ENV_AUDIT_LOG, ""),
        help=(
            "file the audit records of sensitive-value reveals are appended to (JSON lines); "
            f"default: the log (env {config.ENV_AUDIT_LOG})"
        ),
    )


async def _serve(settings: config.Settings) -> None:
    from porter_bundle.api.server import start_server
    from porter_bundle.bundles.registry import RegistryClient
    from porter_bundle.config import load_registry_auths
    from porter_bundle.documents import SchemaCheck
    from porter_bundle.executor.container import ContainerExecutor
    from porter_bundle.service import ActionSettings, Blocking, Services
    from porter_bundle.service.sources import DirectorySecretStore
    from porter_bundle.store import Store

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
    store = Store(settings.database_url, keyring=keyring, pool_size=settings.workers + 1)
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
    await running.stop(settings.grace_seconds)
    await services.actions.close()
    blocking.close()
    store.close()
    registry.close()
    log.info("stopped")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=getattr(args, "log_level", "WARNING"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # The secrets of running actions never reach a log line (nor a traceback).
    from porter_bundle.service.redact import LogRedactingFilter

    for handler in logging.getLogger().handlers:
        handler.addFilter(LogRedactingFilter())
    # Alembic announces each of its plugins at INFO on every start; the migrations it runs stay.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    if args.command != "serve":
        code: int = args.func(args)
        return code
    settings = config.Settings(
        address=args.address,
        database=args.database,
        grace_seconds=args.grace_period,
        workers=args.workers,
        container_host=args.container_host,
        run_timeout_seconds=args.run_timeout,
        max_concurrent_runs=args.max_concurrent_runs,
        cancel_grace_seconds=args.cancel_grace,
        container_network=args.container_network,
        secrets_dir=args.secrets_dir,
        legacy_reveal_sensitive=args.legacy_reveal_sensitive,
        insecure_registries=frozenset(args.insecure_registry),
        registry_config=args.registry_config,
        stream_heartbeat_seconds=args.stream_heartbeat,
        schema_check=args.schema_check,
        encryption_key_file=args.encryption_key_file,
        encryption_key=os.environ.get(config.ENV_ENCRYPTION_KEY, ""),
        token_file=args.token_file,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        tls_client_ca=args.tls_client_ca,
        insecure=args.insecure,
        reflection_requires_auth=args.reflection_requires_auth,
        audit_log=args.audit_log,
    )
    log.info("database: %s", _redact_url(settings.database_url))
    try:
        from porter_bundle.auth.exposure import check_exposure

        check_exposure(
            settings.address, authenticated=settings.authenticates, insecure=settings.insecure
        )
        asyncio.run(_serve(settings))
    except ValueError as exc:  # a setting that cannot be used, e.g. an unreadable registry config
        log.error("%s", exc)
        return 2
    return 0


def _positive_seconds(text: str) -> float:
    """An argparse type: a number of seconds greater than 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds: {text!r}")
    return value


def _redact_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
