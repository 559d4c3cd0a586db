"""Client contexts and the connection flags of every command that talks to a server.

A small YAML file (``$PORTER_BUNDLE_CLIENT_CONFIG``, else
``$XDG_CONFIG_HOME/porter-bundle/client.yaml``, else ``~/.config/porter-bundle/client.yaml``)
names contexts, each a server and how to reach it::

    current-context: dev
    contexts:
      dev: {server: 127.0.0.1:3001, namespace: dev}
      prod: {server: pb.example.com:443, tls-ca: /etc/pb/ca.pem, token-file: ~/.pb-token}

Precedence, high to low: a flag, its ``PORTER_BUNDLE_*`` variable, the context (``--context``,
``$PORTER_BUNDLE_CONTEXT``, else ``current-context``), the default. Everything is read when a
command runs, never when the commands are declared.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import yaml

from porter_bundle.cli.exit_codes import Exit, Failure
from porter_bundle.client import DEFAULT_SERVER, Target

ENV_CLIENT_CONFIG = "PORTER_BUNDLE_CLIENT_CONFIG"
ENV_CONTEXT = "PORTER_BUNDLE_CONTEXT"
ENV_SERVER = "PORTER_BUNDLE_SERVER"
ENV_TOKEN = "PORTER_BUNDLE_TOKEN"
ENV_TLS_CA = "PORTER_BUNDLE_TLS_CA"
ENV_NAMESPACE = "PORTER_BUNDLE_NAMESPACE"
# What a context may hold (the flags' names).
KEYS = ("server", "token-file", "tls", "tls-ca", "tls-cert", "tls-key", "namespace")
_META = "porter_bundle.connection"
_FLAGS = "porter_bundle.connection.flags"


def config_path() -> Path:
    """Where the contexts are kept."""
    if os.environ.get(ENV_CLIENT_CONFIG):
        return Path(os.environ[ENV_CLIENT_CONFIG])
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "porter-bundle" / "client.yaml"


def read_config() -> dict[str, Any]:
    """The client config file's content ({} when there is none)."""
    path = config_path()
    try:
        data = yaml.safe_load(path.read_text()) if path.exists() else {}
    except (OSError, yaml.YAMLError) as exc:
        raise Failure(Exit.USAGE, f"{path}: {str(exc).splitlines()[0]}") from None
    if data is None:
        return {}
    if not isinstance(data, dict) or not isinstance(data.get("contexts", {}), dict):
        raise Failure(Exit.USAGE, f"{path}: not a mapping with a 'contexts' mapping")
    return data


def write_config(data: dict[str, Any]) -> Path:
    """Writes the client config file (mode 0600: it may name token files)."""
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    path.chmod(0o600)
    return path


def selected(name: str | None) -> tuple[str, dict[str, Any]]:
    """The context to use: ``name``, else the current one; ("", {}) when there is none."""
    data = read_config()
    contexts = data.get("contexts", {})
    name = name or os.environ.get(ENV_CONTEXT) or data.get("current-context") or ""
    if not name:
        return "", {}
    if name not in contexts:
        raise Failure(Exit.USAGE, f"no context {name!r} in {config_path()}")
    values = contexts[name] or {}
    unknown = sorted(set(values) - set(KEYS))
    if unknown:
        raise Failure(Exit.USAGE, f"context {name!r}: unknown keys {', '.join(unknown)}")
    return name, dict(values)


# --- the flags ------------------------------------------------------------------------------


def _keep(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    ctx.meta.setdefault(_META, {})[param.name] = value
    if (
        param.name
        and ctx.get_parameter_source(param.name) is click.core.ParameterSource.COMMANDLINE
    ):
        ctx.meta.setdefault(_FLAGS, set()).add(param.name)
    return value


def _option(*decls: str, **kwargs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return click.option(*decls, callback=_keep, expose_value=False, **kwargs)


def connection_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """``--server``, ``--token-file``, ``--tls``, ``--tls-ca``, ``--tls-cert``, ``--tls-key``,
    ``--context``; read back with :func:`target`."""
    options = [
        _option(
            "--server",
            envvar=ENV_SERVER,
            help=f"host:port of the server (env {ENV_SERVER}; default {DEFAULT_SERVER})",
        ),
        # No env default of its own: $PORTER_BUNDLE_TOKEN_FILE names the server's token file
        # (of hashes), which a client must never send as its token.
        _option("--token-file", help=f"file holding the bearer token (else env {ENV_TOKEN})"),
        _option("--tls", is_flag=True, default=None, help="connect over TLS (system CA roots)"),
        _option(
            "--tls-ca",
            envvar=ENV_TLS_CA,
            help=f"CA of the server's certificate; implies --tls (env {ENV_TLS_CA})",
        ),
        _option("--tls-cert", help="PEM client certificate (mutual TLS)"),
        _option("--tls-key", help="PEM private key of --tls-cert"),
        _option("--context", "context_name", help=f"client context to use (env {ENV_CONTEXT})"),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def given() -> dict[str, Any]:
    """The connection flags given to the running command."""
    meta: dict[str, Any] = click.get_current_context().meta.get(_META, {})
    return meta


def flag_given(name: str) -> bool:
    """Whether the running command was given flag ``name`` on its command line."""
    return name in click.get_current_context().meta.get(_FLAGS, set())


def _from_context() -> dict[str, Any]:
    return selected(given().get("context_name"))[1]


def target() -> Target:
    """Where the running command connects: flags, environment, context, defaults."""
    flags = given()
    ctx = _from_context()

    def pick(flag: str, key: str, default: Any) -> Any:
        value = flags.get(flag)
        return value if value is not None else ctx.get(key, default)

    def path(value: str) -> str:
        return str(Path(value).expanduser()) if value else ""

    return Target(
        server=pick("server", "server", DEFAULT_SERVER),
        token_file=path(pick("token_file", "token-file", "")),
        token=os.environ.get(ENV_TOKEN, ""),
        tls=bool(pick("tls", "tls", False)),
        tls_ca=path(pick("tls_ca", "tls-ca", "")),
        tls_cert=path(pick("tls_cert", "tls-cert", "")),
        tls_key=path(pick("tls_key", "tls-key", "")),
    )


def namespace_option(f: Callable[..., Any]) -> Callable[..., Any]:
    """``-n/--namespace`` (env PORTER_BUNDLE_NAMESPACE, else the context's, else global)."""
    return _option(
        "-n",
        "--namespace",
        envvar=ENV_NAMESPACE,
        help=f'namespace ("" = global; env {ENV_NAMESPACE}, else the context\'s)',
    )(f)


def namespace() -> str:
    """The namespace the running command works in."""
    value = given().get("namespace")
    return str(value) if value is not None else str(_from_context().get("namespace", ""))


# --- the `context` commands -----------------------------------------------------------------


@click.group("context", short_help="named client contexts: server, TLS, token, namespace")
def context() -> None:
    """Named client contexts, so that --server, --tls-ca, --token-file and --namespace are not
    repeated on every command. Kept in $PORTER_BUNDLE_CLIENT_CONFIG, else
    ~/.config/porter-bundle/client.yaml. A flag or PORTER_BUNDLE_* variable beats the context."""


def _output_option(f: Callable[..., Any]) -> Callable[..., Any]:
    from porter_bundle.cli.output import output_option

    return output_option(f)


@context.command("list", short_help="list the contexts (* = current)")
@_output_option
def list_contexts(fmt: str) -> int:
    """List the contexts; * marks the current one."""
    from porter_bundle.cli.output import dump, table

    data = read_config()
    current = data.get("current-context", "")
    contexts = {name: values or {} for name, values in data.get("contexts", {}).items()}
    if fmt != "plaintext":
        dump([{"name": n, "current": n == current, **v} for n, v in contexts.items()], fmt)
        return Exit.OK
    rows = [
        ["*" if name == current else "", name, str(values.get("server", DEFAULT_SERVER))]
        for name, values in contexts.items()
    ]
    table(rows, ["current", "name", "server"])
    return Exit.OK


@context.command("show", short_help="show a context (default: the current one)")
@click.argument("name", required=False)
@_output_option
def show_context(name: str | None, fmt: str) -> int:
    """Show a context's settings (default: the one in use)."""
    chosen, values = selected(name)
    if not chosen:
        raise Failure(Exit.REFUSED, f"no current context (in {config_path()})")
    if fmt == "json":
        from porter_bundle.cli.output import dump

        dump({chosen: values}, fmt)
    else:  # plaintext is YAML already: the context as client.yaml holds it
        click.echo(yaml.safe_dump({chosen: values}, sort_keys=False).rstrip())
    return Exit.OK


@context.command("use", short_help="make a context the current one")
@click.argument("name")
def use_context(name: str) -> int:
    """Make NAME the current context."""
    data = read_config()
    if name not in data.get("contexts", {}):
        raise Failure(Exit.REFUSED, f"no context {name!r} in {config_path()}")
    data["current-context"] = name
    write_config(data)
    click.echo(f"current context: {name}")
    return Exit.OK


@context.command("set", short_help="create or change a context")
@click.argument("name")
@click.option("--server", help="host:port of the server")
@click.option("--token-file", help="file holding the bearer token")
@click.option("--tls/--no-tls", default=None, help="connect over TLS")
@click.option("--tls-ca", help="CA of the server's certificate")
@click.option("--tls-cert", help="PEM client certificate (mutual TLS)")
@click.option("--tls-key", help="PEM private key of --tls-cert")
@click.option("-n", "--namespace", help="the namespace commands work in")
@click.option("--use", is_flag=True, help="make it the current context too")
def set_context(name: str, use: bool, **values: Any) -> int:
    """Create context NAME or change the settings given (an empty value removes one)."""
    data = read_config()
    contexts = data.setdefault("contexts", {})
    entry = dict(contexts.get(name) or {})
    for key, value in values.items():
        if value is None:
            continue
        if value == "":
            entry.pop(key.replace("_", "-"), None)
        else:
            entry[key.replace("_", "-")] = value
    contexts[name] = entry
    if use or not data.get("current-context"):
        data["current-context"] = name
    path = write_config(data)
    click.echo(f"{path}: context {name} saved")
    return Exit.OK


@context.command("delete", short_help="delete a context")
@click.argument("name")
def delete_context(name: str) -> int:
    """Delete context NAME."""
    data = read_config()
    if data.get("contexts", {}).pop(name, None) is None:
        raise Failure(Exit.REFUSED, f"no context {name!r} in {config_path()}")
    if data.get("current-context") == name:
        data.pop("current-context")
    write_config(data)
    click.echo(f"deleted context {name}")
    return Exit.OK
