"""``porter-bundle credentials|parameters list|show|apply|delete|export``: credential and
parameter sets, as Porter's ``porter credentials`` and ``porter parameters``."""

from __future__ import annotations

import click

from porter.bundle.v1.value_set_pb2 import NamedValueSource
from porter_bundle.cli import context, output
from porter_bundle.cli.exit_codes import Exit
from porter_bundle.client import Client, SetKind, ValueSet
from porter_bundle.client.apply import apply_paths


def source_text(entry: NamedValueSource) -> str:
    """Where an entry's value comes from, e.g. ``env: USER``; literals that the server
    withholds read ``value: ******``."""
    source = entry.source
    kind = source.WhichOneof("kind")
    if kind is None:
        return "value: ******" if source.redacted else "-"
    if kind == "value":
        return f"value: {output.value_text(source.value)}"
    return f"{kind}: {getattr(source, kind)}"


def _entries(s: ValueSet) -> list[NamedValueSource]:
    return list(s.credentials if hasattr(s, "credentials") else s.parameters)


def _group(kind: SetKind) -> click.Group:
    noun = "credential" if kind == "credentials" else "parameter"
    group = click.Group(
        kind,
        short_help=f"{noun} sets: list, show, apply, delete, export",
        help=f"{noun.capitalize()} sets: named {noun}s and where each value comes from "
        "(value, env, path, command or secret).",
    )

    @group.command("list", short_help=f"list {noun} sets")
    @context.namespace_option
    @click.option("--all-namespaces", is_flag=True, help="every namespace")
    @output.output_option
    @context.connection_options
    def list_sets(all_namespaces: bool, fmt: str) -> int:
        with Client(context.target()) as client:
            found = client.value_sets(kind, context.namespace(), all_namespaces=all_namespaces)
        columns: list[output.Column[ValueSet]] = [
            ("namespace", lambda s: s.namespace),
            ("name", lambda s: s.name),
            (f"{noun}s", lambda s: ", ".join(e.name for e in _entries(s)) or "-"),
            ("modified", lambda s: output.when(s.update_time)),
        ]
        output.emit_list(found, fmt, columns)
        return Exit.OK

    @group.command("show", short_help=f"show a {noun} set")
    @click.argument("name")
    @context.namespace_option
    @output.output_option
    @context.connection_options
    def show_set(name: str, fmt: str) -> int:
        with Client(context.target()) as client:
            found = client.value_set(kind, context.namespace(), name)
        if fmt != "plaintext":
            output.dump(output.as_dict(found), fmt)
            return Exit.OK
        output.emit_one(
            found,
            fmt,
            [
                ("Name", found.name),
                ("Namespace", found.namespace or '"" (global)'),
                ("Created", output.when(found.create_time)),
                ("Modified", output.when(found.update_time)),
            ],
        )
        click.echo("")
        output.table([[e.name, source_text(e)] for e in _entries(found)], [noun, "source"])
        return Exit.OK

    @group.command("apply", short_help=f"create or update {noun} sets from files")
    @click.argument("files", nargs=-1, required=True, metavar="FILE...")
    @context.connection_options
    def apply_sets(files: tuple[str, ...]) -> int:
        """Create or update sets from Porter documents (YAML or JSON files, or directories of
        them), as `porter-bundle apply` does."""
        report = apply_paths(context.target(), files, out=click.echo)
        if report.unreachable:
            return Exit.UNREACHABLE
        return Exit.REFUSED if report.failed else Exit.OK

    @group.command("delete", short_help=f"delete a {noun} set")
    @click.argument("name")
    @context.namespace_option
    @click.option("--force", is_flag=True, help="delete it even while an installation uses it")
    @context.connection_options
    def delete_set(name: str, force: bool) -> int:
        namespace = context.namespace()
        with Client(context.target()) as client:
            client.delete_value_set(kind, namespace, name, force=force)
        click.echo(f"deleted {noun} set {f'{namespace}/{name}'.lstrip('/')}")
        return Exit.OK

    @group.command("export", short_help=f"print a {noun} set as Porter's document")
    @click.argument("name")
    @context.namespace_option
    @click.option(
        "-o",
        "--output",
        "fmt",
        type=click.Choice(["yaml", "json"]),
        default="yaml",
        show_default=True,
    )
    @context.connection_options
    def export_set(name: str, fmt: str) -> int:
        """Print the set as Porter's document: applying it changes nothing (literal
        credential values are exported as `redacted`)."""
        with Client(context.target()) as client:
            doc = client.export_value_set(kind, context.namespace(), name, json=fmt == "json")
        click.echo(doc.rstrip("\n"))
        return Exit.OK

    for command, text in (
        (list_sets, f"List {noun} sets, sorted by namespace and name."),
        (show_set, f"Show a {noun} set: each {noun} and where its value comes from."),
        (delete_set, f"Delete a {noun} set (refused while an installation uses it)."),
    ):
        command.help = text
    return group


credentials = _group("credentials")
parameters = _group("parameters")
