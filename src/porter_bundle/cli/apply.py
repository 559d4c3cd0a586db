"""``porter-bundle apply FILE...``: Porter documents to a server (:mod:`porter_bundle.client.apply`)."""

from __future__ import annotations

import click

from porter_bundle.cli import context
from porter_bundle.cli.exit_codes import Exit
from porter_bundle.client.apply import apply_paths


@click.command(
    short_help="apply Porter documents (installations, sets), as porter does",
    help=(
        "Create or update installations, credential sets and parameter sets from Porter's "
        "YAML/JSON documents (several per file separated by ---, or directories of *.yaml, "
        "*.yml and *.json files) and reconcile each installation as `porter installations "
        "apply` does: install, upgrade, uninstall or nothing. Sets are applied before "
        "installations. Exit status 1 when any document was refused."
    ),
)
@click.argument("files", nargs=-1, required=True, metavar="FILE...")
@click.option(
    "--dry-run", is_flag=True, help="report what would be decided and changed; change nothing"
)
@click.option("--force", is_flag=True, help="run an installation's action even when it is in sync")
@click.option(
    "-n",
    "--namespace",
    default="",
    help=(
        "namespace of the documents that do not name one (as Porter's -n; a document's own "
        'namespace field wins, even when it is ""); default: the global namespace'
    ),
)
@context.connection_options
def apply(files: tuple[str, ...], dry_run: bool, force: bool, namespace: str) -> int:
    """``apply``."""
    report = apply_paths(
        context.target(), files, dry_run=dry_run, force=force, namespace=namespace, out=click.echo
    )
    if report.unreachable:
        return Exit.UNREACHABLE
    return Exit.REFUSED if report.failed else Exit.OK
