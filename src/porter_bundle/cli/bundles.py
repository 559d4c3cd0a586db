"""``porter-bundle bundles list|show|register|pull|publish|delete``: the bundles a server
knows, and bundles pushed to OCI registries."""

from __future__ import annotations

import json
from pathlib import Path

import click

from porter.bundle.v1.bundle_pb2 import Bundle, BundleSource
from porter_bundle import config
from porter_bundle.cli import context, output
from porter_bundle.cli.exit_codes import Exit, Failure
from porter_bundle.client import Client
from porter_bundle.client.publish import publish_file


def source(b: Bundle) -> str:
    """registered or pulled."""
    return BundleSource.Name(b.source).removeprefix("BUNDLE_SOURCE_").lower()


COLUMNS: list[output.Column[Bundle]] = [
    ("reference", lambda b: b.reference),
    ("name", lambda b: b.name),
    ("version", lambda b: b.version),
    ("source", source),
    ("digest", lambda b: b.digest or "-"),
]


@click.group(short_help="bundles: list, show, register, pull, publish, delete")
def bundles() -> None:
    """The bundles a server knows (registered from a bundle.json, or pulled from an OCI
    registry), and publishing bundles to registries."""


@bundles.command("list", short_help="list the bundles the server knows")
@output.output_option
@context.connection_options
def list_bundles(fmt: str) -> int:
    """List the bundles the server knows, sorted by reference."""
    with Client(context.target()) as client:
        found = client.bundles()
    output.emit_list(found, fmt, COLUMNS)
    return Exit.OK


@bundles.command("show", short_help="show a bundle")
@click.argument("reference")
@output.output_option
@context.connection_options
def show_bundle(reference: str, fmt: str) -> int:
    """Show a bundle: name, version, digest, actions, parameters and outputs."""
    with Client(context.target()) as client:
        found = client.bundle(reference)
    doc = json.loads(found.bundle_json or "{}")
    output.emit_one(
        found,
        fmt,
        [
            ("Reference", found.reference),
            ("Name", found.name),
            ("Version", found.version),
            ("Description", found.description or "-"),
            ("Source", source(found)),
            ("Digest", found.digest or "-"),
            ("Actions", ", ".join(["install", "upgrade", "uninstall", *doc.get("actions", {})])),
            ("Parameters", ", ".join(doc.get("parameters", {})) or "-"),
            ("Credentials", ", ".join(doc.get("credentials", {})) or "-"),
            ("Outputs", ", ".join(doc.get("outputs", {})) or "-"),
        ],
    )
    return Exit.OK


@bundles.command("register", short_help="register a bundle.json under a reference")
@click.argument(
    "bundle_json", metavar="BUNDLE_JSON", type=click.Path(dir_okay=False, path_type=Path)
)
@click.option("--reference", required=True, help="the reference to register it as: REPOSITORY:TAG")
@context.connection_options
def register_bundle(bundle_json: Path, reference: str) -> int:
    """Register BUNDLE_JSON (checked against the CNAB schema) under --reference, for
    installations to use without a registry."""
    try:
        text = bundle_json.read_text()
    except OSError as exc:
        raise Failure(Exit.REFUSED, f"{bundle_json}: {exc.strerror}") from None
    with Client(context.target()) as client:
        found = client.register_bundle(reference, text)
    click.echo(f"{found.reference} {found.name} {found.version}")
    return Exit.OK


@bundles.command("pull", short_help="have the server pull a bundle from its registry")
@click.argument("reference")
@context.connection_options
def pull_bundle(reference: str) -> int:
    """Have the server pull REFERENCE from its OCI registry now (a tag is resolved again each
    time). Prints the reference and digest."""
    with Client(context.target()) as client, output.progress(f"pulling {reference}"):
        found = client.pull_bundle(reference)
    click.echo(f"{found.reference} {found.digest}")
    return Exit.OK


@bundles.command("delete", short_help="forget a bundle reference")
@click.argument("reference")
@context.connection_options
def delete_bundle(reference: str) -> int:
    """Remove a bundle reference from the server."""
    with Client(context.target()) as client:
        client.delete_bundle(reference)
    click.echo(f"deleted bundle {reference}")
    return Exit.OK


@click.command(
    "publish",
    short_help="push a bundle.json to an OCI registry as `porter publish` does",
    help=(
        "Push BUNDLE_JSON to an OCI registry in the cnab-to-oci layout Porter uses (no server "
        "involved). Its invocation image (invocationImages[0].image) must already be pushed to "
        "the same repository; bundle.json is completed with that image's digest and size. "
        "Prints the reference and the bundle digest."
    ),
)
@click.argument("bundle_json", metavar="BUNDLE_JSON")
@click.option("--reference", required=True, help="where to push it: REGISTRY/REPOSITORY:TAG")
@click.option("--insecure", is_flag=True, help="talk to the registry over plain HTTP")
@click.option(
    "--registry-config",
    envvar=config.ENV_REGISTRY_CONFIG,
    default="",
    help=f"a docker config.json whose auths give registry credentials (env {config.ENV_REGISTRY_CONFIG})",
)
def publish(bundle_json: str, reference: str, insecure: bool, registry_config: str) -> int:
    """``bundles publish``."""
    published = publish_file(
        Path(bundle_json),
        reference,
        insecure=insecure,
        registry_config=registry_config,
        out=click.echo,
    )
    if published is None:
        return Exit.REFUSED
    click.echo(f"{published.reference} {published.digest}")
    return Exit.OK


bundles.add_command(publish)

# `bundle publish`, as the command was first called.
bundle_alias = click.Group("bundle", hidden=True, commands=[publish], help="see `bundles`")
