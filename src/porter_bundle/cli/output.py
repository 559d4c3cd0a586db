"""How read commands print: ``-o plaintext`` (aligned tables, Porter's default), ``-o json``
and ``-o yaml`` (the API's messages as protobuf's JSON mapping gives them, stable for
scripts). Colour only on a terminal, never with NO_COLOR (rich's rules)."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click
import yaml
from google.protobuf import json_format
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

FORMATS = ("plaintext", "json", "yaml")

M = TypeVar("M", bound=Message)
Column = tuple[str, Callable[[M], str]]


def output_option(f: Callable[..., Any]) -> Callable[..., Any]:
    """``-o/--output plaintext|json|yaml``."""
    return click.option(
        "-o",
        "--output",
        "fmt",
        type=click.Choice(FORMATS, case_sensitive=False),
        default="plaintext",
        show_default=True,
        help="how to print: aligned text, or the API's messages as JSON or YAML",
    )(f)


def as_dict(message: Message) -> dict[str, Any]:
    """A message in protobuf's JSON mapping (lowerCamelCase names, enums by name)."""
    return json_format.MessageToDict(message)


def dump(data: Any, fmt: str) -> None:
    """Prints plain data (dicts, lists) as JSON or YAML."""
    if fmt == "json":
        click.echo(json.dumps(data, indent=2))
    else:
        click.echo(yaml.safe_dump(data, sort_keys=False, allow_unicode=True).rstrip())


def table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> None:
    """Prints aligned columns; bold headers on a terminal unless NO_COLOR is set."""
    from rich.console import Console
    from rich.table import Table

    grid = Table(
        box=None, pad_edge=False, show_edge=False, header_style="bold", padding=(0, 2, 0, 0)
    )
    for name in header:
        grid.add_column(name.upper(), no_wrap=True, overflow="ignore")
    for row in rows:
        grid.add_row(*row)
    tty = sys.stdout.isatty()
    plain = bool(os.environ.get("NO_COLOR"))  # no escape sequence at all, bold included
    console = Console(
        width=None if tty else 10_000,
        color_system=None if plain else "auto",
        no_color=plain or None,
        highlight=False,
        soft_wrap=False,
    )
    with console.capture() as captured:
        console.print(grid)
    for line in captured.get().splitlines():
        click.echo(line.rstrip())


def emit_list(items: Sequence[M], fmt: str, columns: Sequence[Column[M]]) -> None:
    """A list of messages: a table, or a JSON/YAML array."""
    if fmt != "plaintext":
        dump([as_dict(m) for m in items], fmt)
        return
    table([[value(m) for _, value in columns] for m in items], [name for name, _ in columns])


def emit_one(item: Message, fmt: str, fields: Sequence[tuple[str, str]]) -> None:
    """One message: ``name: value`` lines, or a JSON/YAML object."""
    if fmt != "plaintext":
        dump(as_dict(item), fmt)
        return
    width = max((len(name) for name, _ in fields), default=0)
    for name, value in fields:
        click.echo(f"{name + ':':<{width + 1}} {value}".rstrip())


def progress(text: str) -> contextlib.AbstractContextManager[object]:
    """A spinner with ``text`` on standard error while long work runs: only when standard
    output and standard error are both a terminal (not ``TERM=dumb``) and NO_COLOR is unset,
    so scripts, pipes and logs never see it. Lines printed meanwhile appear above it."""
    if (
        not (sys.stdout.isatty() and sys.stderr.isatty())
        or os.environ.get("NO_COLOR")
        or os.environ.get("TERM") == "dumb"
    ):
        return contextlib.nullcontext()
    from rich.console import Console

    return Console(stderr=True).status(text)


def when(stamp: Timestamp) -> str:
    """A timestamp as RFC 3339 to the second, "-" when unset."""
    if not (stamp.seconds or stamp.nanos):
        return "-"
    return stamp.ToDatetime().strftime("%Y-%m-%dT%H:%M:%SZ")


def value_text(value: Any) -> str:
    """A JSON value (protobuf Value) as one line: strings raw, the rest as JSON."""
    data = json_format.MessageToDict(value) if isinstance(value, Message) else value
    return data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
