"""Porter's way of reading a command line (cobra and pflag), for the agent's commands.

What the Porter operator's Jobs rely on, and what this parser does like pflag:

- flags may come anywhere among the positional arguments (``delete -n dev NAME`` and
  ``delete NAME -n dev`` are the same); ``--`` ends the flags;
- a flag's value is the next argument even when it is empty or starts with ``-``
  (``-n ""`` is the global namespace), or follows ``=`` (``--namespace=dev``, ``-n=dev``), or
  is glued to a one-letter flag (``-ndev``);
- boolean flags take no argument (``--force``), or ``--force=false``;
- an unknown flag is an error: ``unknown flag: --foo``, ``unknown shorthand flag: 'x' in -x``;
- a command is found by its name or one of its aliases (``installations``, ``inst``, ``creds``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any


class UsageError(Exception):
    """A command line Porter would refuse; the message is Porter's wording."""


@dataclass(frozen=True)
class Flag:
    """One flag: ``--name`` and optionally ``-s``; boolean flags take no value."""

    name: str
    short: str = ""
    boolean: bool = False
    default: Any = None
    help: str = ""

    @property
    def dest(self) -> str:
        return self.name.replace("-", "_")


@dataclass
class Command:
    """A command of the tree: subcommands, or a ``run`` taking the parsed :class:`Parsed`."""

    name: str
    aliases: tuple[str, ...] = ()
    flags: tuple[Flag, ...] = ()
    run: Callable[[Any, Parsed], int] | None = None
    """The leaf's action: ``run(context, parsed)``, the exit code."""
    args: str = ""
    """Usage of the positional arguments, e.g. ``FILE``."""
    subcommands: list[Command] = field(default_factory=list)

    def find(self, word: str) -> Command | None:
        for sub in self.subcommands:
            if word == sub.name or word in sub.aliases:
                return sub
        return None


@dataclass
class Parsed:
    """The command found, its positional arguments and every flag's value (or default)."""

    path: list[str]
    command: Command
    args: list[str]
    values: dict[str, Any]
    given: set[str]
    """Flags given on the command line (by dest), as pflag's ``Changed``."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self.values[name]
        except KeyError:
            raise AttributeError(name) from None


_TRUE = {"1", "t", "T", "true", "TRUE", "True"}
_FALSE = {"0", "f", "F", "false", "FALSE", "False"}


def _parse_flags(
    argv: Sequence[str], flags: Sequence[Flag], values: dict[str, Any], given: set[str]
) -> list[str]:
    by_long = {f.name: f for f in flags}
    by_short = {f.short: f for f in flags if f.short}
    positional: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg == "--":
            positional.extend(argv[i:])
            break
        if arg.startswith("--") and len(arg) > 2:
            name, eq, inline = arg[2:].partition("=")
            flag = by_long.get(name)
            if flag is None:
                raise UsageError(f"unknown flag: --{name}")
        elif arg.startswith("-") and len(arg) > 1:
            short, body = arg[1], arg[2:]
            flag = by_short.get(short)
            if flag is None:
                raise UsageError(f"unknown shorthand flag: '{short}' in {arg}")
            eq = "=" if body.startswith("=") or (body and not flag.boolean) else ""
            inline = body[1:] if body.startswith("=") else body
            if flag.boolean and body and not body.startswith("="):
                raise UsageError(f"unknown shorthand flag: '{body[0]}' in {arg}")
        else:
            positional.append(arg)
            continue
        shown = f"--{flag.name}" if not flag.short else f"-{flag.short}, --{flag.name}"
        if flag.boolean:
            if not eq:
                value: Any = True
            elif inline in _TRUE:
                value = True
            elif inline in _FALSE:
                value = False
            else:
                raise UsageError(
                    f'invalid argument "{inline}" for "{shown}" flag: '
                    f'strconv.ParseBool: parsing "{inline}": invalid syntax'
                )
        elif eq:
            value = inline
        elif i < len(argv):
            value = argv[i]
            i += 1
        else:
            raise UsageError(f"flag needs an argument: {arg}")
        values[flag.dest] = value
        given.add(flag.dest)
    return positional


def parse(root: Command, argv: Sequence[str], global_flags: Sequence[Flag] = ()) -> Parsed:
    """Finds the command ``argv`` names and parses its flags; raises :class:`UsageError` as
    Porter would. Command words may stand among the flags (``-n dev credentials delete X``)."""
    # Flags of any command may precede the words; collect every flag the tree knows so that
    # a value such as the "" of ``-n ""`` is never taken for a command word.
    known = {f.name: f for f in global_flags}
    shorts = {f.short: f for f in global_flags if f.short}
    stack = [root]
    while stack:
        cmd = stack.pop()
        for f in cmd.flags:
            known.setdefault(f.name, f)
            if f.short:
                shorts.setdefault(f.short, f)
        stack.extend(cmd.subcommands)
    words: list[str] = []
    others: list[str] = []
    command = root
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            others.extend(argv[i:])
            break
        takes_value = False
        flag: Flag | None = None
        if arg.startswith("--") and len(arg) > 2 and "=" not in arg:
            flag = known.get(arg[2:])
        elif arg.startswith("-") and len(arg) == 2:
            flag = shorts.get(arg[1])
        takes_value = flag is not None and not flag.boolean
        if arg.startswith("-") and len(arg) > 1:
            others.append(arg)
            if takes_value and i + 1 < len(argv):
                others.append(argv[i + 1])
                i += 1
        elif command.subcommands and (found := command.find(arg)) is not None:
            words.append(arg)
            command = found
        elif command.subcommands:
            words.append(arg)  # unknown: parse() reports it
            command = Command(arg)
        else:
            others.append(arg)
        i += 1
    return _parse_words(root, words, others, global_flags)


def _parse_words(
    root: Command, words: list[str], others: list[str], global_flags: Sequence[Flag]
) -> Parsed:
    command, path = root, [root.name]
    for word in words:
        found = command.find(word)
        if found is None:
            raise UsageError(f'unknown command "{word}" for "{" ".join(path)}"')
        command = found
        path.append(found.name)
    if command.subcommands:
        raise UsageError(f'"{" ".join(path)}" requires a subcommand')
    flags = [*global_flags, *command.flags]
    values: dict[str, Any] = {f.dest: f.default for f in flags}
    given: set[str] = set()
    positional = _parse_flags(others, flags, values, given)
    return Parsed(path, command, positional, values, given)
