"""The commands README.md and docs/*.md show, read with markdown-it: fenced code blocks (a
shell block sits between ``<!-- NAME:begin -->`` and ``<!-- NAME:end -->`` so a test can name
it) and inline ``porter-bundle ...`` code spans."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from markdown_it import MarkdownIt
from markdown_it.token import Token

REPO = Path(__file__).resolve().parents[1]
SHELL = frozenset({"sh", "bash", "shell", "console"})
_MARKER = re.compile(r"<!--\s*([\w-]+):(begin|end)\s*-->")
# porter-bundle as a command word: at the start, after a path or inside $(...) / quotes.
_COMMAND = re.compile(r"""(?:^|[\s/("'])porter-bundle[\s)]""")


def documents() -> list[str]:
    """The documents whose commands tests run: README.md and docs/*.md (repository-relative)."""
    return ["README.md", *sorted(f"docs/{p.name}" for p in (REPO / "docs").glob("*.md"))]


@dataclass(frozen=True)
class Fence:
    doc: str
    line: int  # 1-based line of the opening fence
    lang: str
    name: str | None  # the marker pair around it, if any
    text: str

    @property
    def shell(self) -> bool:
        return self.lang in SHELL


@cache
def _tokens(doc: str) -> list[Token]:
    md = MarkdownIt("commonmark").enable("table")
    return md.parse((REPO / doc).read_text())


def fences(doc: str) -> list[Fence]:
    """Every fenced code block of ``doc``, with the name of the marker pair around it."""
    found: list[Fence] = []
    name: str | None = None
    for token in _tokens(doc):
        if token.type == "html_block":
            for marker, edge in _MARKER.findall(token.content):
                if edge == "begin":
                    name = marker
                elif name == marker:
                    name = None
        elif token.type == "fence":
            line = token.map[0] + 1 if token.map else 0
            lang = token.info.split()[0] if token.info.strip() else ""
            found.append(Fence(doc, line, lang, name, token.content))
    return found


def block(doc: str, name: str, lang: str = "sh") -> str:
    """The text of the code block of ``doc`` between ``<!-- name:begin -->`` and
    ``<!-- name:end -->``. Tests read blocks only through here, with literal arguments: the
    coverage check in tests/test_docs.py finds those calls to know which blocks run."""
    named = [f for f in fences(doc) if f.name == name]
    assert len(named) == 1, f"{doc} has {len(named)} {name} blocks, not 1"
    assert named[0].lang == lang, f"{doc}'s {name} block is {named[0].lang!r}, not {lang!r}"
    return named[0].text


def inline_spans(doc: str) -> list[str]:
    """Every inline code span of ``doc`` (outside fenced blocks), in order, whitespace
    collapsed (a span may wrap over lines)."""
    return [
        " ".join(child.content.split())
        for token in _tokens(doc)
        for child in token.children or ()
        if child.type == "code_inline"
    ]


def inline_commands(doc: str) -> list[str]:
    """The inline code spans of ``doc`` that run ``porter-bundle`` (as a command word followed
    by more)."""
    return [span for span in inline_spans(doc) if _COMMAND.search(span)]


def script_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment a block runs in: the venv on PATH, no client config, server, context
    or namespace of the user's, no colour; plus what ``extra`` adds to the environment (e.g.
    the test Podman's store)."""
    import os
    import sys

    env = {**os.environ, "PORTER_BUNDLE_CLIENT_CONFIG": str(tmp_path / "client.yaml")}
    for name in ("PORTER_BUNDLE_SERVER", "PORTER_BUNDLE_CONTEXT", "PORTER_BUNDLE_NAMESPACE"):
        env.pop(name, None)
    env.update({k: v for k, v in extra.items() if os.environ.get(k) != v})
    env["NO_COLOR"] = "1"
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    return env
