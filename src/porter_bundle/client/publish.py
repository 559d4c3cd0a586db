"""``porter-bundle bundle publish BUNDLE_JSON --reference REF``: push a bundle to a registry.

Talks to the OCI registry directly (no server): the bundle lands in the layout
``porter publish`` (cnab-to-oci) uses, so Porter and this server can both pull it. The
invocation image must be in the same repository already (``podman push`` it there).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TextIO

from porter_bundle import config
from porter_bundle.bundles.publish import publish
from porter_bundle.bundles.registry import RegistryClient
from porter_bundle.errors import InvalidArgument, PorterBundleError
from porter_bundle.validation import MAX_BUNDLE_JSON_BYTES


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Adds ``bundle publish``."""
    bundle = subparsers.add_parser("bundle", help="work with bundles in OCI registries")
    commands = bundle.add_subparsers(dest="bundle_command", required=True)
    parser = commands.add_parser(
        "publish",
        help="push a bundle.json to an OCI registry as `porter publish` does",
        description=(
            "Push BUNDLE_JSON to an OCI registry in the cnab-to-oci layout Porter uses. Its "
            "invocation image (invocationImages[0].image) must already be pushed to the same "
            "repository; bundle.json is completed with that image's digest and size. Prints the "
            "bundle digest."
        ),
    )
    parser.add_argument("bundle_json", metavar="BUNDLE_JSON", help="the bundle.json file")
    parser.add_argument(
        "--reference", required=True, help="where to push it: REGISTRY/REPOSITORY:TAG"
    )
    parser.add_argument(
        "--insecure", action="store_true", help="talk to the registry over plain HTTP"
    )
    parser.add_argument(
        "--registry-config",
        default=os.environ.get(config.ENV_REGISTRY_CONFIG, ""),
        help=(
            "a docker config.json whose auths give registry credentials "
            f"(env {config.ENV_REGISTRY_CONFIG})"
        ),
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Publishes; 0 on success (the digest printed), 1 on failure (the reason printed)."""
    out = out or sys.stdout
    path = Path(args.bundle_json)
    try:
        if path.stat().st_size > MAX_BUNDLE_JSON_BYTES:
            print(f"{path}: error: larger than {MAX_BUNDLE_JSON_BYTES} bytes", file=out)
            return 1
        raw = path.read_bytes()
        auths = config.load_registry_auths(args.registry_config)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=out)
        return 1
    host = args.reference.split("/", 1)[0]
    client = RegistryClient(insecure_hosts=frozenset({host} if args.insecure else ()), auths=auths)
    try:
        published = publish(client, raw, args.reference)
    except InvalidArgument as exc:
        print(f"{path}: error: {exc.message}", file=out)
        for v in exc.violations:
            print(f"  {v.field}: {v.description}", file=out)
        return 1
    except PorterBundleError as exc:
        print(f"error: {exc.message}", file=out)
        return 1
    finally:
        client.close()
    print(f"{published.reference} {published.digest}", file=out)
    return 0
