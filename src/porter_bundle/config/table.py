"""The table of settings, generated from their declarations: ``python -m porter_bundle.config``
prints it, ``python -m porter_bundle.config --write docs/configuration.md`` puts it between the
markers there (a test fails when that table is not what this makes). A setting's ``see`` names a
section: the link goes to the Markdown file beside the table that has that heading."""

from __future__ import annotations

import re
from pathlib import Path

from porter_bundle.config.settings import Settings, option_of
from porter_bundle.config.sources import (
    CONFIG_FLAG,
    CONFIG_HELP,
    ENV_CONFIG,
    default_text,
    describe_field,
)

BEGIN = "<!-- settings:begin -->"
END = "<!-- settings:end -->"


def markdown_table(where: Path | None = None) -> str:
    """Every setting in one Markdown table: name (the config file key), flag, environment
    variable, default and meaning, in the order of ``serve --help`` (declaration order).
    ``where`` is the file the table goes in (its links are relative to it)."""
    rows = [
        "| setting | flag | env | default | meaning |",
        "|---|---|---|---|---|",
        f"| | `{CONFIG_FLAG}` | `{ENV_CONFIG}` | none | {_cell(CONFIG_HELP)} |",
    ]
    for name, field in Settings.model_fields.items():
        option = option_of(field)
        flag = f"`{option.flag}`" if option.flag else "none (env only)"
        default = default_text(name) if option.default_text else f"`{default_text(name)}`"
        meaning = describe_field(name)
        if option.see:
            meaning += f" (see [{option.see}]({_link(option.see, where)}))"
        rows.append(f"| `{name}` | {flag} | `{option.env}` | {_cell(default)} | {_cell(meaning)} |")
    return "\n".join(rows) + "\n"


def replace_table(text: str, where: Path | None = None) -> str:
    """``text`` (of the file ``where``) with what is between its settings markers replaced by
    the table."""
    begin, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    return text[:begin] + "\n" + markdown_table(where) + text[end:]


def write_table(path: Path) -> bool:
    """Puts the table into the Markdown file at ``path``; whether it changed."""
    old = path.read_text()
    new = replace_table(old, path)
    if new != old:
        path.write_text(new)
    return new != old


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def _link(title: str, where: Path | None) -> str:
    """``#anchor`` of a section of ``where``, else ``file.md#anchor`` of the file beside it
    that has it."""
    anchor = _anchor(title)
    if where is None:
        return f"#{anchor}"
    heading = re.compile(rf"^#+ {re.escape(title)}\s*$", re.M)
    files = [where, *sorted(p for p in where.parent.glob("*.md") if p != where)]
    for path in files:
        if path.exists() and heading.search(path.read_text()):
            return f"#{anchor}" if path == where else f"{path.name}#{anchor}"
    return f"#{anchor}"


def _anchor(title: str) -> str:
    return re.sub(r"[^a-z0-9 -]", "", title.lower()).replace(" ", "-")
