"""``porter-bundle install|upgrade|invoke|uninstall INSTALLATION``: run a bundle action, as
``porter install`` and friends do, and wait for it (or follow its log, or not wait)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import click
import grpc

from porter.bundle.v1.installation_pb2 import Installation
from porter_bundle.cli import context, output
from porter_bundle.cli.exit_codes import EPILOG, Exit, Failure
from porter_bundle.cli.runs import notice, print_run, result, run_async, stream_log
from porter_bundle.client import Client, bundle_reference, reference_text
from porter_bundle.client.follow import watch_runs

HELP = {
    "install": (
        "install a bundle as INSTALLATION",
        "Install a bundle: create INSTALLATION (with --reference) and run its install action.",
    ),
    "upgrade": (
        "upgrade INSTALLATION",
        "Upgrade INSTALLATION (to the bundle --reference names, if given).",
    ),
    "invoke": (
        "run a custom action of INSTALLATION",
        "Run the custom action --action of INSTALLATION's bundle.",
    ),
    "uninstall": (
        "uninstall INSTALLATION",
        "Run the uninstall action of INSTALLATION (then `installations delete` it).",
    ),
}


_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


def _parameters(pairs: tuple[str, ...]) -> dict[str, str]:
    values: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"{pair!r} is not NAME=VALUE", param_hint="--param")
        values[name] = value
    return values


def _typed(name: str, text: str, kind: str) -> Any:
    """A --param value as its definition's JSON type (as Porter converts them)."""
    try:
        if kind == "integer":
            return int(text)
        if kind == "number":
            return float(text)
        if kind == "boolean":
            if text.lower() not in (*_TRUE, *_FALSE):
                raise ValueError(text)
            return text.lower() in _TRUE
        if kind in ("object", "array"):
            return json.loads(text)
    except ValueError:
        raise click.BadParameter(
            f"{name}: {text!r} is not of type {kind}", param_hint="--param"
        ) from None
    return text


def _convert(
    client: Client, namespace: str, name: str, reference: str, values: dict[str, str]
) -> dict[str, Any]:
    """``values`` typed by the bundle's parameter definitions; as given (strings) when the
    bundle cannot be read (the server checks them anyway)."""
    if not values:
        return {}
    try:
        if not reference:
            inst = client.installation(namespace, name)
            reference = inst.status.bundle_reference or reference_text(inst.bundle)
        types = client.parameter_types(reference)
    except grpc.RpcError:
        return dict(values)
    return {k: _typed(k, v, types.get(k, "")) for k, v in values.items()}


def _prepare(
    client: Client, action: str, namespace: str, name: str, reference: str,
    credential_sets: tuple[str, ...], parameter_sets: tuple[str, ...],
) -> bool:  # fmt: skip
    """Creates the installation (install) or points it at the bundle (others) when
    ``reference`` is given; whether the sets went onto a new installation."""
    if not reference:
        return False
    try:
        ref = bundle_reference(reference)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--reference") from None
    try:
        client.installation(namespace, name)
    except grpc.RpcError as exc:
        if exc.code() != grpc.StatusCode.NOT_FOUND or action != "install":
            raise
        client.create_installation(
            Installation(
                namespace=namespace,
                name=name,
                bundle=ref,
                credential_sets=list(credential_sets),
                parameter_sets=list(parameter_sets),
            )
        )
        return True
    client.set_bundle(namespace, name, ref)
    return False


def _action_command(action: str) -> click.Command:
    def command(installation: str, **opts: Any) -> int:
        namespace = context.namespace()
        name = opts.get("custom_action") or action
        params = _parameters(opts["params"])
        with Client(context.target()) as client:
            on_new = _prepare(
                client, action, namespace, installation, opts["reference"],
                opts["creds"], opts["param_sets"],
            )  # fmt: skip
            run = client.execute(
                namespace,
                installation,
                name,
                parameters=_convert(client, namespace, installation, opts["reference"], params),
                credential_sets=() if on_new else opts["creds"],
                parameter_sets=() if on_new else opts["param_sets"],
                force=opts["force"],
            )
        where = f"{namespace}/{installation}".lstrip("/")
        if not opts["wait"]:
            click.echo(run.id)
            return Exit.OK
        notice(f"{name} of {where}: run {run.id}")
        if opts["follow"]:
            return stream_log(
                run_id=run.id, namespace=namespace, installation=installation, follow=True
            )
        with output.progress(f"waiting for {name} of {where} (run {run.id})"):
            last = run_async(
                watch_runs(
                    context.target(),
                    namespace=namespace,
                    installation=installation,
                    run_id=run.id,
                    on_run=print_run,
                    notice=notice,
                )
            )
        if last is None:
            raise Failure(Exit.UNREACHABLE, f"run {run.id}: no state received")
        return result(last)

    decorators: list[Callable[[Any], Any]] = [click.argument("installation")]
    if action == "invoke":
        decorators.append(
            click.option(
                "--action", "custom_action", required=True, help="the custom action to run"
            )
        )
    decorators += [
        click.option(
            "--reference",
            default="",
            help="the bundle, REPOSITORY:TAG or REPOSITORY@DIGEST (known to the server)",
        ),
        click.option(
            "--param", "params", multiple=True, metavar="NAME=VALUE", help="a parameter value"
        ),
        click.option("--cred", "creds", multiple=True, metavar="SET", help="a credential set"),
        click.option(
            "--param-set", "param_sets", multiple=True, metavar="SET", help="a parameter set"
        ),
        click.option(
            "--wait/--no-wait",
            default=True,
            show_default=True,
            help="wait for the run to end (--no-wait: print its ID)",
        ),
        click.option("-f", "--follow", is_flag=True, help="print the run's log live while waiting"),
        click.option(
            "--force",
            is_flag=True,
            help="run even where the installation's state refuses it (e.g. install when installed)",
        ),
        context.namespace_option,
        context.connection_options,
    ]
    f: Any = command
    for decorate in reversed(decorators):
        f = decorate(f)
    short, text = HELP[action]
    return click.command(
        action,
        short_help=short,
        help=text + " Prints the run's states (or, with --follow, its log) until it ends.",
        epilog=EPILOG,
    )(f)


install = _action_command("install")
upgrade = _action_command("upgrade")
invoke = _action_command("invoke")
uninstall = _action_command("uninstall")
