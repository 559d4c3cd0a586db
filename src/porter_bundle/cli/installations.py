"""``porter-bundle installations``: installations, their runs, outputs and logs (Porter's
``porter installations ...``)."""

from __future__ import annotations

from collections.abc import Iterable

import click
from google.protobuf.struct_pb2 import Struct

from porter.bundle.v1.installation_pb2 import Installation, InstallationState
from porter.bundle.v1.run_pb2 import Output, Run, RunState
from porter_bundle.cli import context, output
from porter_bundle.cli.exit_codes import Exit, Failure
from porter_bundle.cli.runs import action_name, reconnect_option, state_name, stream_log
from porter_bundle.client import Client, reference_text

SENSITIVE = "******"


def installation_state(inst: Installation) -> str:
    """defined, installed or uninstalled."""
    return InstallationState.Name(inst.status.state).removeprefix("INSTALLATION_STATE_").lower()


def last_run_state(inst: Installation) -> str:
    """The state of the installation's most recent run ("-" before the first)."""
    if not inst.status.run_id:
        return "-"
    return RunState.Name(inst.status.run_state).removeprefix("RUN_STATE_")


def bundle_text(inst: Installation) -> str:
    """The installation's bundle reference as text."""
    return reference_text(inst.bundle)


def parameters_text(values: Struct, sensitive: Iterable[str]) -> str:
    """``name=value, ...`` sorted by name; sensitive values hidden."""
    hidden = set(sensitive)
    return ", ".join(
        f"{k}={SENSITIVE if k in hidden else output.value_text(v)}"
        for k, v in sorted(values.fields.items())
    )


def _names(values: Iterable[str]) -> str:
    return ", ".join(values) or "-"


@click.group(short_help="installations: list, show, delete; runs, outputs, logs")
def installations() -> None:
    """Installations, their runs, outputs and logs. Run actions with install, upgrade, invoke
    and uninstall; create installations from documents with apply."""


@installations.command("list", short_help="list installations")
@context.namespace_option
@click.option("--all-namespaces", is_flag=True, help="every namespace")
@output.output_option
@context.connection_options
def list_installations(all_namespaces: bool, fmt: str) -> int:
    """List installations, sorted by namespace and name."""
    with Client(context.target()) as client:
        found = client.installations(context.namespace(), all_namespaces=all_namespaces)
    columns: list[output.Column[Installation]] = [
        ("namespace", lambda i: i.namespace),
        ("name", lambda i: i.name),
        ("bundle", bundle_text),
        ("state", installation_state),
        ("last action", lambda i: i.status.action or "-"),
        ("status", last_run_state),
        ("modified", lambda i: output.when(i.update_time)),
    ]
    output.emit_list(found, fmt, columns)
    return Exit.OK


@installations.command("show", short_help="show an installation")
@click.argument("name")
@context.namespace_option
@output.output_option
@context.connection_options
def show_installation(name: str, fmt: str) -> int:
    """Show an installation: its bundle, sets, parameters and status."""
    with Client(context.target()) as client:
        inst = client.installation(context.namespace(), name)
    params = parameters_text(inst.parameters, inst.sensitive_parameters)
    output.emit_one(
        inst,
        fmt,
        [
            ("Name", inst.name),
            ("Namespace", inst.namespace or '"" (global)'),
            ("Bundle", bundle_text(inst)),
            ("Bundle digest", inst.status.bundle_digest or "-"),
            ("Bundle version", inst.status.bundle_version or "-"),
            ("State", installation_state(inst)),
            ("Last action", inst.status.action or "-"),
            ("Last run", inst.status.run_id or "-"),
            ("Status", last_run_state(inst)),
            ("Credential sets", _names(inst.credential_sets)),
            ("Parameter sets", _names(inst.parameter_sets)),
            ("Parameters", params or "-"),
            ("Labels", ", ".join(f"{k}={v}" for k, v in sorted(inst.labels.items())) or "-"),
            ("Created", output.when(inst.create_time)),
            ("Modified", output.when(inst.update_time)),
        ],
    )
    return Exit.OK


@installations.command("delete", short_help="delete an installation with its runs")
@click.argument("name")
@context.namespace_option
@click.option("--force", is_flag=True, help="delete it even while installed")
@context.connection_options
def delete_installation(name: str, force: bool) -> int:
    """Delete an installation with its runs and outputs (refused while it is installed,
    unless --force: uninstall it first)."""
    namespace = context.namespace()
    with Client(context.target()) as client:
        client.delete_installation(namespace, name, force=force)
    click.echo(f"deleted installation {f'{namespace}/{name}'.lstrip('/')}")
    return Exit.OK


# --- runs --------------------------------------------------------------------------------


@installations.group("runs", short_help="the runs of an installation")
def runs_group() -> None:
    """The runs of an installation (newest first)."""


RUN_COLUMNS: list[output.Column[Run]] = [
    ("run id", lambda r: r.id),
    ("action", action_name),
    ("state", state_name),
    ("created", lambda r: output.when(r.create_time)),
    ("completed", lambda r: output.when(r.complete_time)),
    ("message", lambda r: r.message),
]


@runs_group.command("list", short_help="list the runs of an installation")
@click.argument("installation")
@context.namespace_option
@output.output_option
@context.connection_options
def list_runs(installation: str, fmt: str) -> int:
    """List the runs of INSTALLATION, newest first."""
    with Client(context.target()) as client:
        found = client.runs(context.namespace(), installation)
    output.emit_list(found, fmt, RUN_COLUMNS)
    return Exit.OK


@runs_group.command("show", short_help="show a run")
@click.argument("run_id", metavar="RUN_ID")
@output.output_option
@context.connection_options
def show_run(run_id: str, fmt: str) -> int:
    """Show a run by its ID: action, state, bundle, parameters and times."""
    with Client(context.target()) as client:
        found = client.find_run(run_id)
        run = client.run(found.namespace, found.installation, found.id)
    params = parameters_text(run.parameters, run.sensitive_parameters)
    output.emit_one(
        run,
        fmt,
        [
            ("Run ID", run.id),
            ("Installation", f"{run.namespace}/{run.installation}".lstrip("/")),
            ("Action", action_name(run)),
            ("State", state_name(run)),
            ("Message", run.message or "-"),
            ("Bundle", run.bundle_reference or "-"),
            ("Bundle digest", run.bundle_digest or "-"),
            ("Parameters", params or "-"),
            ("Created", output.when(run.create_time)),
            ("Started", output.when(run.start_time)),
            ("Completed", output.when(run.complete_time)),
        ],
    )
    return Exit.OK


# --- outputs -----------------------------------------------------------------------------


def _output_value(o: Output) -> str:
    return SENSITIVE if o.sensitive else output.value_text(o.value)


def run_option(f: click.decorators.FC) -> click.decorators.FC:
    """``--run RUN_ID`` (default: the latest successful run)."""
    return click.option(
        "--run", "run_id", default="latest", show_default=True, help="the run (an ID, or latest)"
    )(f)


@installations.group("outputs", short_help="the outputs of an installation")
def outputs_group() -> None:
    """The outputs of an installation's runs."""


@outputs_group.command("list", short_help="list the outputs of an installation")
@click.argument("installation")
@context.namespace_option
@run_option
@output.output_option
@context.connection_options
def list_outputs(installation: str, run_id: str, fmt: str) -> int:
    """List the outputs of INSTALLATION's latest successful run (or of --run); sensitive
    values are not shown."""
    with Client(context.target()) as client:
        resp = client.outputs(context.namespace(), installation, run_id)
    columns: list[output.Column[Output]] = [
        ("name", lambda o: o.name),
        ("type", lambda o: o.type or "-"),
        ("value", _output_value),
        ("run id", lambda o: o.run_id),
    ]
    output.emit_list(list(resp.outputs), fmt, columns)
    return Exit.OK


@installations.group("output", short_help="one output of an installation")
def output_group() -> None:
    """One output of an installation."""


@output_group.command("show", short_help="print one output's value")
@click.argument("name")
@click.option("-i", "--installation", required=True, help="name of the installation")
@context.namespace_option
@run_option
@output.output_option
@context.connection_options
def show_output(name: str, installation: str, run_id: str, fmt: str) -> int:
    """Print the value of output NAME of an installation's latest successful run (or of
    --run): strings as they are, other values as JSON."""
    with Client(context.target()) as client:
        resp = client.outputs(context.namespace(), installation, run_id)
    found = next((o for o in resp.outputs if o.name == name), None)
    if found is None:
        raise Failure(Exit.REFUSED, f"run {resp.run_id} has no output {name!r}")
    if fmt != "plaintext":
        output.dump(output.as_dict(found), fmt)
    elif found.sensitive:
        raise Failure(Exit.REFUSED, f"output {name!r} is sensitive: its value is not shown")
    else:
        click.echo(output.value_text(found.value))
    return Exit.OK


# --- logs --------------------------------------------------------------------------------


@installations.group("logs", short_help="the logs of an installation's runs")
def logs_group() -> None:
    """The logs of an installation's runs."""


@logs_group.command("show", short_help="print the log of an installation's run")
@click.option("-i", "--installation", required=True, help="name of the installation")
@context.namespace_option
@click.option("--run", "run_id", default="", help="the run (default: the most recent one)")
@click.option("-f", "--follow", is_flag=True, help="keep printing until the run ends")
@reconnect_option
@context.connection_options
def show_logs(installation: str, run_id: str, follow: bool, reconnect: float) -> int:
    """Print the log of an installation's most recent run (or of --run); with --follow,
    live until the run ends (exit status 4 unless it SUCCEEDED)."""
    namespace = context.namespace()
    if not run_id:
        with Client(context.target()) as client:
            inst = client.installation(namespace, installation)
        if not inst.status.run_id:
            raise Failure(Exit.REFUSED, f"installation {installation} has no run yet")
        run_id = inst.status.run_id
    return stream_log(
        run_id=run_id, namespace=namespace, installation=installation, follow=follow,
        reconnect=reconnect,
    )  # fmt: skip
