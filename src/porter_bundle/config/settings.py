"""The server's settings, each declared once: type, default, flag, environment variable, help
text and validation. The ``serve`` flags, the loading from the environment and a config file,
and the table in docs/configuration.md are all generated from these declarations.

Over 400 lines on purpose: one declaration per setting, all in one class, is what it is for."""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

DEFAULT_ADDRESS = "127.0.0.1:3001"
DATABASE_FILE = "porter-bundle.db"
DATA_DIR_KEY_FILE = "porter-bundle.key"

# The groups of ``serve --help`` and of the settings table, in this order.
SERVER = "server"
STORE = "store"
ACTIONS = "bundle actions (containers)"
REGISTRY = "OCI registries"
STREAMS = "live streams"
DOCUMENTS = "Porter documents"
LEGACY = "Porter operator compatibility"
SECURITY = "security (authentication, authorization, TLS, audit)"
AT_REST = "secrets at rest"


@dataclass(frozen=True)
class Option:
    """How a setting is given besides a config file: its environment variable, its ``serve``
    flag (None: environment only), its group, and how its default reads when the value alone
    says little."""

    env: str
    flag: str | None
    group: str
    default_text: str | None = None
    metavar: str | None = None
    see: str | None = None
    """The section of the docs that tells more (its title)."""


def option_of(field: FieldInfo) -> Option:
    """The :class:`Option` a setting is declared with."""
    for item in field.metadata:
        if isinstance(item, Option):
            return item
    raise LookupError(f"setting without an Option: {field!r}")


_HOST_PORT = re.compile(r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(?P<port>[0-9]{1,5})")


def _host_port(value: str) -> str:
    """``value`` when it is host:port (an IPv6 host in brackets); ValueError otherwise."""
    match = _HOST_PORT.fullmatch(value)
    if not match or int(match["port"]) > 65535:
        raise ValueError(f"{value!r} is not host:port (e.g. 127.0.0.1:3001 or [::]:3001)")
    host = match["host"]
    if host.startswith("["):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise ValueError(f"{value!r}: {host} is not an IPv6 address") from None
    return value


class Settings(BaseSettings):
    """Everything the server needs to start. Built in code it holds exactly the values given
    (and the defaults); :func:`porter_bundle.config.load_settings` adds the environment and a
    config file. Invalid values and combinations raise ``pydantic.ValidationError`` (a
    ValueError); the repr never shows a secret."""

    model_config = SettingsConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    # --- server ---
    address: Annotated[
        str,
        Option("PORTER_BUNDLE_ADDRESS", "--address", SERVER, metavar="HOST:PORT"),
        Field(description="host:port to listen on; port 0 picks a free port"),
    ] = DEFAULT_ADDRESS
    grace_seconds: Annotated[
        float,
        Option("PORTER_BUNDLE_GRACE_PERIOD", "--grace-period", SERVER, metavar="SECONDS"),
        Field(ge=0, description="seconds in-flight calls may take to finish after SIGTERM"),
    ] = 10.0
    workers: Annotated[
        int,
        Option("PORTER_BUNDLE_WORKERS", "--workers", SERVER, metavar="N"),
        Field(ge=1, description="threads of the one pool for blocking work (database, files)"),
    ] = 8
    health_probe_seconds: Annotated[
        float,
        Option(
            "PORTER_BUNDLE_HEALTH_PROBE",
            "--health-probe",
            SERVER,
            metavar="SECONDS",
            see="Health and Kubernetes probes",
        ),
        Field(
            gt=0,
            description=(
                "how often the database and the container engine are checked for the "
                "grpc.health.v1 statuses"
            ),
        ),
    ] = 5.0
    log_level: Annotated[
        Literal["DEBUG", "INFO", "WARNING", "ERROR"],
        Option("PORTER_BUNDLE_LOG_LEVEL", "--log-level", SERVER),
        Field(description="the least severe level the server logs"),
    ] = "INFO"
    log_format: Annotated[
        Literal["text", "json"],
        Option("PORTER_BUNDLE_LOG_FORMAT", "--log-format", SERVER, see="Observability"),
        Field(
            description=(
                "text lines, or JSON lines with fixed fields (time, level, logger, message, and "
                "a run's or a call's fields)"
            )
        ),
    ] = "text"
    metrics_address: Annotated[
        str,
        Option(
            "PORTER_BUNDLE_METRICS_ADDRESS",
            "--metrics-address",
            SERVER,
            default_text="off",
            metavar="HOST:PORT",
            see="Observability",
        ),
        Field(
            description=(
                "host:port of a plain HTTP server of Prometheus metrics (/metrics); port 0 "
                "picks a free port"
            )
        ),
    ] = ""
    otlp_endpoint: Annotated[
        str,
        Option(
            "PORTER_BUNDLE_OTLP_ENDPOINT",
            "--otlp-endpoint",
            SERVER,
            default_text="off (unless OTEL_EXPORTER_OTLP_ENDPOINT is set)",
            metavar="URL",
            see="Observability",
        ),
        Field(
            description=(
                "OTLP/gRPC endpoint that receives OpenTelemetry traces (spans per call and per "
                "run), e.g. http://collector:4317; needs the otel extra"
            )
        ),
    ] = ""

    # --- store ---
    database: Annotated[
        str,
        Option(
            "PORTER_BUNDLE_DATABASE",
            "--database",
            STORE,
            default_text=f"the SQLite file {DATABASE_FILE} in the data directory",
            metavar="URL",
        ),
        Field(
            description=(
                "SQLAlchemy URL of the database, e.g. sqlite:////var/lib/porter-bundle/db.sqlite "
                "or postgresql+psycopg://user:pass@host/db"
            )
        ),
    ] = ""
    data_dir: Annotated[
        str,
        Option(
            "PORTER_BUNDLE_DATA_DIR",
            "--data-dir",
            STORE,
            default_text="$XDG_DATA_HOME/porter-bundle, else ~/.local/share/porter-bundle",
            metavar="PATH",
        ),
        Field(
            description=(
                "directory of the default database, key file and secret store, created if missing"
            )
        ),
    ] = ""

    # --- bundle actions ---
    executor: Annotated[
        Literal["container", "kubernetes"],
        Option("PORTER_BUNDLE_EXECUTOR", "--executor", ACTIONS, see="Deploy on Kubernetes"),
        Field(
            description=(
                "where runs execute: container (Docker or Podman, --container-host) or "
                "kubernetes (a Job per run, through the Kubernetes API; docs/kubernetes.md)"
            )
        ),
    ] = "container"
    kubeconfig: Annotated[
        str,
        Option(
            "PORTER_BUNDLE_KUBECONFIG",
            "--kubeconfig",
            ACTIONS,
            default_text="in a pod: its service account",
            metavar="PATH",
        ),
        Field(description="kubeconfig of the cluster for --executor kubernetes"),
    ] = ""
    kubernetes_namespace: Annotated[
        str,
        Option(
            "PORTER_BUNDLE_KUBERNETES_NAMESPACE",
            "--kubernetes-namespace",
            ACTIONS,
            default_text="the server's own (its service account's), else default",
            metavar="NAMESPACE",
        ),
        Field(
            description="namespace of the Jobs, pods and Secrets of runs (--executor kubernetes)"
        ),
    ] = ""
    kubernetes_service_account: Annotated[
        str,
        Option(
            "PORTER_BUNDLE_KUBERNETES_SERVICE_ACCOUNT",
            "--kubernetes-service-account",
            ACTIONS,
            default_text="none (no API token in the pod)",
            metavar="NAME",
        ),
        Field(description="service account of the runs' pods (--executor kubernetes)"),
    ] = ""
    kubernetes_image_pull_secrets: Annotated[
        frozenset[str],
        Option(
            "PORTER_BUNDLE_KUBERNETES_IMAGE_PULL_SECRETS",
            "--kubernetes-image-pull-secret",
            ACTIONS,
            default_text="none",
            metavar="NAME",
        ),
        Field(
            description=(
                "a Secret the runs' pods pull images with (--executor kubernetes); the flag is "
                "repeatable, the environment variable comma-separated"
            )
        ),
    ] = frozenset()
    kubernetes_job_ttl_seconds: Annotated[
        int,
        Option(
            "PORTER_BUNDLE_KUBERNETES_JOB_TTL", "--kubernetes-job-ttl", ACTIONS, metavar="SECONDS"
        ),
        Field(
            ge=0,
            description=(
                "ttlSecondsAfterFinished of a run's Job: Kubernetes removes a finished Job the "
                "server could not delete after this long"
            ),
        ),
    ] = 3600
    kubernetes_start_timeout_seconds: Annotated[
        float,
        Option(
            "PORTER_BUNDLE_KUBERNETES_START_TIMEOUT",
            "--kubernetes-start-timeout",
            ACTIONS,
            metavar="SECONDS",
        ),
        Field(
            gt=0,
            description=(
                "seconds a run's pod may stay unscheduled or uncreated (quota) before the run "
                "fails with the reason; image pull errors fail it at once"
            ),
        ),
    ] = 300.0
    kubernetes_helper_image: Annotated[
        str,
        Option(
            "PORTER_BUNDLE_KUBERNETES_HELPER_IMAGE",
            "--kubernetes-helper-image",
            ACTIONS,
            metavar="IMAGE",
        ),
        Field(
            description=(
                "the porter-bundle image, run beside each invocation image to hand its outputs "
                "back (pin it by digest)"
            )
        ),
    ] = "porter-bundle"
    container_host: Annotated[
        str | None,
        Option(
            "PORTER_BUNDLE_CONTAINER_HOST",
            "--container-host",
            ACTIONS,
            default_text="DOCKER_HOST, then the usual sockets",
            metavar="URL",
        ),
        Field(
            description=(
                "Docker Engine API endpoint of Docker or Podman, e.g. "
                "unix:///run/podman/podman.sock"
            )
        ),
    ] = None
    run_timeout_seconds: Annotated[
        float,
        Option("PORTER_BUNDLE_RUN_TIMEOUT", "--run-timeout", ACTIONS, metavar="SECONDS"),
        Field(gt=0, description="seconds a run may take before it is stopped and fails"),
    ] = 3600.0
    max_concurrent_runs: Annotated[
        int,
        Option("PORTER_BUNDLE_MAX_CONCURRENT_RUNS", "--max-concurrent-runs", ACTIONS, metavar="N"),
        Field(ge=1, description="containers running at once; further runs wait PENDING"),
    ] = 4
    output_retention_runs: Annotated[
        int,
        Option(
            "PORTER_BUNDLE_OUTPUT_RETENTION",
            "--output-retention",
            ACTIONS,
            default_text="0 (keep every value)",
            metavar="RUNS",
        ),
        Field(
            ge=0,
            description=(
                "keep output values of this many most recent runs per installation; older runs "
                "keep each output's name, type and digest, reported expired (an output's latest "
                "value is always kept)"
            ),
        ),
    ] = 0
    replica_id: Annotated[
        str,
        Option(
            "PORTER_BUNDLE_REPLICA_ID",
            "--replica-id",
            ACTIONS,
            default_text="HOSTNAME-PID-RANDOM",
            metavar="ID",
            see="Running several replicas",
        ),
        Field(
            max_length=200,
            description=(
                "this server's name as the owner of the runs it executes (several replicas on "
                "one PostgreSQL); a stable one (a StatefulSet pod's name) lets a restarted "
                "replica take its runs back before their lease expires"
            ),
        ),
    ] = ""
    run_lease_seconds: Annotated[
        float,
        Option(
            "PORTER_BUNDLE_RUN_LEASE",
            "--run-lease",
            ACTIONS,
            metavar="SECONDS",
            see="Running several replicas",
        ),
        Field(
            gt=0,
            description=(
                "how long a replica's hold on a run lasts unless renewed; a run whose lease "
                "expired is taken over by another replica"
            ),
        ),
    ] = 30.0
    lease_renew_seconds: Annotated[
        float,
        Option(
            "PORTER_BUNDLE_LEASE_RENEW",
            "--lease-renew",
            ACTIONS,
            metavar="SECONDS",
            see="Running several replicas",
        ),
        Field(
            gt=0,
            description=(
                "how often a replica renews its runs' leases and looks for runs whose lease "
                "expired (less than the run lease)"
            ),
        ),
    ] = 10.0
    cancel_grace_seconds: Annotated[
        float,
        Option("PORTER_BUNDLE_CANCEL_GRACE", "--cancel-grace", ACTIONS, metavar="SECONDS"),
        Field(ge=0, description="seconds between SIGTERM and SIGKILL when a run is canceled"),
    ] = 10.0
    engine_retry_seconds: Annotated[
        float,
        Option("PORTER_BUNDLE_ENGINE_RETRY", "--engine-retry", ACTIONS, metavar="SECONDS"),
        Field(
            gt=0,
            description=(
                "seconds a run keeps trying to reach a container engine that stopped answering "
                "(it stays RUNNING and is re-attached to its container when the engine answers) "
                "before it fails; the run's timeout ends the wait too"
            ),
        ),
    ] = 600.0
    container_network: Annotated[
        str | None,
        Option(
            "PORTER_BUNDLE_CONTAINER_NETWORK",
            "--container-network",
            ACTIONS,
            default_text="no network",
            metavar="MODE",
        ),
        Field(description="network mode for invocation images, e.g. bridge"),
    ] = None
    secrets_dir: Annotated[
        str,
        Option(
            "PORTER_BUNDLE_SECRETS_DIR",
            "--secrets-dir",
            ACTIONS,
            default_text="<data dir>/secrets",
            metavar="PATH",
        ),
        Field(description="directory of the built-in secret store, one file per secret"),
    ] = ""

    # --- registries ---
    secret_store: Annotated[
        Literal["directory", "kubernetes"],
        Option(
            "PORTER_BUNDLE_SECRET_STORE",
            "--secret-store",
            ACTIONS,
            see="Use with the Porter operator",
        ),
        Field(
            description=(
                "where `secret: X` sources are read: directory (the built-in store, "
                "--secrets-dir) or kubernetes (the Secret X, key value, in the action's "
                "namespace, through the Kubernetes API with the pod's service account)"
            )
        ),
    ] = "directory"
    kubernetes_api: Annotated[
        str,
        Option(
            "PORTER_BUNDLE_KUBERNETES_API",
            "--kubernetes-api",
            ACTIONS,
            default_text="in a pod: https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT",
            metavar="URL",
        ),
        Field(description="URL of the Kubernetes API for --secret-store kubernetes"),
    ] = ""
    kubernetes_token_file: Annotated[
        str,
        Option(
            "PORTER_BUNDLE_KUBERNETES_TOKEN_FILE",
            "--kubernetes-token-file",
            ACTIONS,
            metavar="PATH",
        ),
        Field(
            description=(
                "service account token for --secret-store kubernetes (re-read for each request; "
                "ca.crt and namespace beside it are used too)"
            )
        ),
    ] = "/var/run/secrets/kubernetes.io/serviceaccount/token"
    insecure_registries: Annotated[
        frozenset[str],
        Option(
            "PORTER_BUNDLE_INSECURE_REGISTRIES",
            "--insecure-registry",
            REGISTRY,
            default_text="none",
            metavar="HOST[:PORT]",
        ),
        Field(
            description=(
                "a registry reached over plain HTTP; the flag is repeatable, the environment "
                "variable comma-separated"
            )
        ),
    ] = frozenset()
    registry_config: Annotated[
        str,
        Option(
            "PORTER_BUNDLE_REGISTRY_CONFIG",
            "--registry-config",
            REGISTRY,
            default_text="none",
            metavar="PATH",
        ),
        Field(description="a docker config.json whose auths give registry credentials"),
    ] = ""

    # --- live streams ---
    stream_heartbeat_seconds: Annotated[
        float,
        Option(
            "PORTER_BUNDLE_STREAM_HEARTBEAT",
            "--stream-heartbeat",
            STREAMS,
            metavar="SECONDS",
            see="Live runs and logs",
        ),
        Field(
            gt=0,
            description=(
                "live streams (WatchInstallationRuns, StreamRunLogs) idle this long send a "
                "heartbeat, so proxies with idle timeouts keep them open"
            ),
        ),
    ] = 15.0
    stream_recheck_seconds: Annotated[
        float,
        Option("PORTER_BUNDLE_STREAM_RECHECK", "--stream-recheck", STREAMS, metavar="SECONDS"),
        Field(
            gt=0,
            description=(
                "how often a live stream re-reads the store besides waiting for events, so a "
                "change made by another server process still arrives"
            ),
        ),
    ] = 5.0

    # --- Porter documents ---
    schema_check: Annotated[
        Literal["exact", "minor", "major", "none"],
        Option("PORTER_BUNDLE_SCHEMA_CHECK", "--schema-check", DOCUMENTS, see="Porter documents"),
        Field(
            description=(
                "how strictly a Porter document's schemaVersion must match the supported "
                "versions: exact, minor or major (the same MAJOR.MINOR or MAJOR, with a "
                "warning), or none"
            )
        ),
    ] = "exact"

    # --- Porter operator compatibility ---
    legacy_address: Annotated[
        str,
        Option(
            "PORTER_BUNDLE_LEGACY_ADDRESS",
            "--legacy-address",
            LEGACY,
            default_text="none (the legacy API is on --address only)",
            metavar="HOST:PORT",
            see="Use with the Porter operator",
        ),
        Field(
            description=(
                "a second listener serving only porter.v1alpha1.Porter (and health), plaintext "
                "and unauthenticated, as the Porter operator dials it; the --address API keeps "
                "its tokens and TLS. Only behind a network boundary that lets nothing but the "
                "operator reach it"
            )
        ),
    ] = ""
    legacy_reveal_sensitive: Annotated[
        bool,
        Option(
            "PORTER_BUNDLE_LEGACY_REVEAL_SENSITIVE",
            "--legacy-reveal-sensitive",
            LEGACY,
            see="Porter operator compatibility",
        ),
        Field(
            description=(
                "porter.v1alpha1.Porter (the Porter operator's API) returns sensitive output "
                "values instead of omitting them; only for a trusted in-cluster deployment"
            )
        ),
    ] = False

    # --- security ---
    token_file: Annotated[
        str,
        Option(
            "PORTER_BUNDLE_TOKEN_FILE",
            "--token-file",
            SECURITY,
            default_text="no bearer tokens",
            metavar="PATH",
            see="Security",
        ),
        Field(
            description=(
                "YAML or JSON token file: principals, sha256 of their bearer tokens, role "
                "bindings per namespace; re-read when it changes"
            )
        ),
    ] = ""
    tls_cert: Annotated[
        str,
        Option(
            "PORTER_BUNDLE_TLS_CERT",
            "--tls-cert",
            SECURITY,
            default_text="plaintext",
            metavar="PATH",
        ),
        Field(description="PEM certificate of the server: serve TLS only (needs --tls-key)"),
    ] = ""
    tls_key: Annotated[
        str,
        Option("PORTER_BUNDLE_TLS_KEY", "--tls-key", SECURITY, default_text="none", metavar="PATH"),
        Field(description="PEM private key of --tls-cert"),
    ] = ""
    tls_client_ca: Annotated[
        str,
        Option(
            "PORTER_BUNDLE_TLS_CLIENT_CA",
            "--tls-client-ca",
            SECURITY,
            default_text="none",
            metavar="PATH",
        ),
        Field(
            description=(
                "PEM CA of client certificates: mutual TLS, the certificate's subject CN is the "
                "principal (needs --tls-cert and --tls-key)"
            )
        ),
    ] = ""
    insecure: Annotated[
        bool,
        Option("PORTER_BUNDLE_INSECURE", "--insecure", SECURITY),
        Field(
            description=(
                "allow listening on a non-loopback address without authentication; every "
                "caller may then do everything"
            )
        ),
    ] = False
    reflection_requires_auth: Annotated[
        bool,
        Option("PORTER_BUNDLE_REFLECTION_REQUIRES_AUTH", "--reflection-requires-auth", SECURITY),
        Field(description="server reflection needs credentials too; health checks never do"),
    ] = False
    audit_log: Annotated[
        str,
        Option(
            "PORTER_BUNDLE_AUDIT_LOG",
            "--audit-log",
            SECURITY,
            default_text="the log",
            metavar="PATH",
        ),
        Field(
            description="file the audit records of sensitive-value reveals are appended to (JSON lines)"
        ),
    ] = ""

    # --- secrets at rest ---
    encryption_key_file: Annotated[
        str,
        Option(
            "PORTER_BUNDLE_ENCRYPTION_KEY_FILE",
            "--encryption-key-file",
            AT_REST,
            default_text=(
                f"<database file>.key beside a SQLite database, else {DATA_DIR_KEY_FILE} in the "
                "data directory, created when missing"
            ),
            metavar="PATH",
            see="Secrets at rest",
        ),
        Field(
            description=(
                "file of the keys that encrypt secrets in the database (base64, one a line, "
                "newest first, mode 0600)"
            )
        ),
    ] = ""
    encryption_key: Annotated[
        SecretStr,
        Option(
            "PORTER_BUNDLE_ENCRYPTION_KEY",
            None,
            AT_REST,
            default_text="the key file",
            see="Secrets at rest",
        ),
        Field(
            description=(
                "the encryption keys themselves (base64, comma-separated, newest first) instead "
                "of a key file; environment (or config file) only, never a flag, since a command "
                "line is visible to every user in ps"
            )
        ),
    ] = SecretStr("")

    # --- validation -------------------------------------------------------------------------

    @field_validator("address", "metrics_address", "legacy_address")
    @classmethod
    def _check_address(cls, value: str, info: ValidationInfo) -> str:
        if not value and info.field_name in ("metrics_address", "legacy_address"):
            return value  # off
        return _host_port(value)

    @field_validator("schema_check", "log_format", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("container_host", "container_network", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_validator("kubernetes_image_pull_secrets", mode="before")
    @classmethod
    def _names(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list | tuple | set | frozenset):
            return value
        return frozenset(n.strip() for item in value for n in str(item).split(",") if n.strip())

    @field_validator("insecure_registries", mode="before")
    @classmethod
    def _hosts(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list | tuple | set | frozenset):
            return value
        hosts = frozenset(
            host.strip() for item in value for host in str(item).split(",") if host.strip()
        )
        for host in hosts:
            if "/" in host:
                raise ValueError(f"{host!r} is not host[:port] (no scheme, no path)")
        return hosts

    @model_validator(mode="after")
    def _check_lease(self) -> Settings:
        if self.lease_renew_seconds >= self.run_lease_seconds:
            raise ValueError(
                f"{name_of('lease_renew_seconds')} ({self.lease_renew_seconds:g}) must be less "
                f"than {name_of('run_lease_seconds')} ({self.run_lease_seconds:g})"
            )
        return self

    @model_validator(mode="after")
    def _check_tls(self) -> Settings:
        if bool(self.tls_cert) != bool(self.tls_key):
            given, missing = ("tls_cert", "tls_key") if self.tls_cert else ("tls_key", "tls_cert")
            raise ValueError(f"TLS needs both: {name_of(given)} is set, {name_of(missing)} is not")
        if self.tls_client_ca and not self.tls_cert:
            raise ValueError(
                f"mutual TLS ({name_of('tls_client_ca')}) needs {name_of('tls_cert')} and "
                f"{name_of('tls_key')}"
            )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Only the values given in code: ``load_settings`` merges flags, environment and
        config file, so that a test or a tool building settings never picks up the shell's."""
        return (init_settings,)

    def __repr_args__(self) -> Any:
        for name, value in super().__repr_args__():
            yield name, (redact_url(value) if name == "database" and value else value)

    # --- derived values ---------------------------------------------------------------------

    @property
    def authenticates(self) -> bool:
        """Whether callers are authenticated (a token file or mutual TLS)."""
        return bool(self.token_file or self.tls_client_ca)

    @property
    def data_path(self) -> Path:
        """The data directory: ``data_dir``, else the default one."""
        return Path(self.data_dir) if self.data_dir else default_data_dir()

    @property
    def secrets_path(self) -> Path:
        """The secret store's directory."""
        return Path(self.secrets_dir) if self.secrets_dir else self.data_path / "secrets"

    @property
    def database_url(self) -> str:
        """The database URL to use."""
        return self.database or sqlite_url(self.data_path / DATABASE_FILE)


def env_of(setting: str) -> str:
    """The environment variable of a setting."""
    return option_of(Settings.model_fields[setting]).env


def default_data_dir() -> Path:
    """``$PORTER_BUNDLE_DATA_DIR``, else ``$XDG_DATA_HOME/porter-bundle``, else
    ``~/.local/share/porter-bundle``."""
    if os.environ.get(env_of("data_dir")):
        return Path(os.environ[env_of("data_dir")])
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "porter-bundle"


def sqlite_url(path: Path) -> str:
    """The SQLAlchemy URL of a SQLite file."""
    return f"sqlite:///{path.resolve()}"


def name_of(setting: str) -> str:
    """How a message names a setting: its flag and its environment variable."""
    option = option_of(Settings.model_fields[setting])
    return f"{option.flag} / {option.env}" if option.flag else option.env


def choices_of(field: FieldInfo) -> tuple[str, ...]:
    """The allowed values of a Literal setting; () for the others."""
    if get_origin(field.annotation) is Literal:
        return tuple(str(arg) for arg in get_args(field.annotation))
    return ()


def redact_url(url: str) -> str:
    """A database URL with its password hidden."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<not a URL>"
