"""The README's table of settings, generated from their declarations: ``python -m
porter_bundle.config`` prints it, ``python -m porter_bundle.config --write README.md`` puts it
between the markers there (a test fails when the README's table is not what this makes)."""

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


def markdown_table() -> str:
    """Every setting in one Markdown table: name (the config file key), flag, environment
    variable, default and meaning, in the order of ``serve --help`` (declaration order)."""
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
            meaning += f" (see [{option.see}](#{_anchor(option.see)}))"
        rows.append(f"| `{name}` | {flag} | `{option.env}` | {_cell(default)} | {_cell(meaning)} |")
    return "\n".join(rows) + "\n"


def replace_table(readme: str) -> str:
    """``readme`` with the text between its settings markers replaced by the table."""
    begin, end = readme.index(BEGIN) + len(BEGIN), readme.index(END)
    return readme[:begin] + "\n" + markdown_table() + readme[end:]


def write_table(path: Path) -> bool:
    """Puts the table into the README at ``path``; whether it changed."""
    old = path.read_text()
    new = replace_table(old)
    if new != old:
        path.write_text(new)
    return new != old


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def _anchor(title: str) -> str:
    return re.sub(r"[^a-z0-9 -]", "", title.lower()).replace(" ", "-")
