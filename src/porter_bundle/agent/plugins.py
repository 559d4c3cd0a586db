"""``plugins install`` and ``plugins list``: recorded only.

porter-bundle keeps storage and secrets itself, so it needs no Porter plugin; but the operator
marks an AgentConfig ready only once ``plugins install -f plugins.yaml`` exits 0. The plugins
asked for are recorded in ``$PORTER_HOME/plugins`` (the operator's plugin volume, when it has
one) and listed in Porter's JSON shape.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from porter_bundle.agent.commands import CommandFailed, Context, print_listing, read_document
from porter_bundle.agent.flags import Parsed, UsageError
from porter_bundle.agent.home import porter_home


def _plugins_file(ctx: Context) -> Path:
    return porter_home(ctx.env) / "plugins" / "porter-bundle-installed.json"


def _recorded_plugins(ctx: Context) -> list[dict[str, Any]]:
    try:
        loaded = json.loads(_plugins_file(ctx).read_text())
    except (OSError, ValueError):
        return []
    return loaded if isinstance(loaded, list) else []


def install(ctx: Context, parsed: Parsed) -> int:
    """Records the plugins asked for; porter-bundle needs none (storage and secrets are its own)."""
    wanted: list[dict[str, Any]] = []
    if parsed.file:
        doc = read_document(str(parsed.file))
        plugins = doc.get("plugins") or {}
        if not isinstance(plugins, dict):
            raise CommandFailed(f"invalid plugins file {parsed.file}: plugins must be a mapping")
        for name, spec in sorted(plugins.items()):
            spec = spec if isinstance(spec, dict) else {}
            wanted.append({"name": str(name), "version": str(spec.get("version", ""))})
    wanted += [{"name": a, "version": str(parsed.version or "")} for a in parsed.args]
    if not wanted:
        raise UsageError("plugin name or --file is required")
    recorded = {p["name"]: p for p in _recorded_plugins(ctx) if isinstance(p, dict)}
    for plugin in wanted:
        recorded[plugin["name"]] = plugin
        print(
            f"installed {plugin['name']} plugin {plugin['version']} "
            "(recorded only: porter-bundle keeps storage and secrets itself)",
            file=ctx.out,
        )
    path = _plugins_file(ctx)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(sorted(recorded.values(), key=lambda p: p["name"])))
    except OSError as exc:
        print(f"WARNING: could not record the plugins in {path}: {exc.strerror}", file=ctx.err)
    return 0


def list_plugins(ctx: Context, parsed: Parsed) -> int:
    listed = [
        {
            "name": p.get("name", ""),
            "versionInfo": {"version": p.get("version", ""), "commit": "", "author": ""},
            "implementations": [],
        }
        for p in _recorded_plugins(ctx)
        if isinstance(p, dict)
    ]
    print_listing(ctx, parsed, listed, ("name",))
    return 0
