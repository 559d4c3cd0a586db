"""Every shell block of README.md and docs/*.md is run by a test, or listed in NOT_RUN with why
(and its commands checked to be only the programs that reason is about). A block is run when a
test reads it with ``block("<doc>", "<name>")`` (tests/doc_blocks.py); this check finds those
calls in the tests' source, so a new block fails here until a test runs it. Inline
``porter-bundle`` commands are all run by tests/test_docs_inline.py."""

from __future__ import annotations

import ast
import shlex
from pathlib import Path

import pytest

from tests.doc_blocks import REPO, Fence, documents, fences, inline_spans

TESTS = REPO / "tests"
NOT_RUN: dict[tuple[str, str], tuple[str, frozenset[str]]] = {
    # (doc, block): (why no test runs it, the only programs its commands may call)
    ("README.md", "quick-start"): (
        "make test is this suite; make run a foreground server (tests start serve themselves)",
        frozenset({"make"}),
    ),
    ("docs/kubernetes.md", "deploy"): (
        "needs a Kubernetes cluster (tests/deploy validates the manifests offline; "
        "tests/image builds make image's images)",
        frozenset({"make", "kubectl"}),
    ),
    ("docs/kubernetes.md", "postgresql-secrets"): (
        "needs a Kubernetes cluster",
        frozenset({"kubectl"}),
    ),
    ("docs/operator.md", "agent-secret"): ("needs a Kubernetes cluster", frozenset({"kubectl"})),
    ("docs/operator.md", "release-images"): (
        "pulls Docker Hub's python base (no registry here): make image builds these targets "
        "from a Debian base instead, and tests/image runs them",
        frozenset({"podman"}),
    ),
}


def blocks_tests_run() -> set[tuple[str, str]]:
    """The (doc, name) of every ``block("doc", "name", ...)`` call in tests/."""
    found: set[tuple[str, str]] = set()
    for path in TESTS.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "block"
                and len(node.args) >= 2
                and all(isinstance(a, ast.Constant) for a in node.args[:2])
            ):
                found.add((str(node.args[0].value), str(node.args[1].value)))
    return found


def commands(text: str) -> list[list[str]]:
    """The commands of a shell block: continuation lines joined, comments dropped."""
    joined = text.replace("\\\n", " ")
    return [words for line in joined.splitlines() if (words := shlex.split(line, comments=True))]


def shell_fences() -> list[Fence]:
    return [f for doc in documents() for f in fences(doc) if f.shell]


def test_every_shell_block_is_named():
    unnamed = [f"{f.doc}:{f.line}" for f in shell_fences() if not f.name]
    assert not unnamed, f"shell blocks without <!-- NAME:begin/end --> markers: {unnamed}"


def test_every_shell_block_is_run_by_a_test_or_says_why_not():
    shown = {(f.doc, f.name) for f in shell_fences()}
    run = blocks_tests_run()
    assert len(run & shown) >= 9  # the scan finds the tests' calls
    missing = shown - run - set(NOT_RUN)
    assert not missing, f"shell blocks no test runs (run them, or add to NOT_RUN): {missing}"
    assert not (run & set(NOT_RUN)), "a block both run and listed as not run"
    assert set(NOT_RUN) <= shown, f"NOT_RUN names blocks that are gone: {set(NOT_RUN) - shown}"
    assert run - {k for k in run if k[0] in documents()} == set(), "a test reads an unknown doc"


def test_blocks_not_run_call_only_what_their_reason_is_about():
    for fence in shell_fences():
        key = (fence.doc, fence.name or "")
        if key not in NOT_RUN:
            continue
        reason, programs = NOT_RUN[key]
        called = {words[0] for words in commands(fence.text)}
        assert called and called <= programs, (fence.doc, fence.name, reason, called - programs)


def test_every_block_says_its_language():
    """So a script cannot hide from the checks above in a block without one (diagrams and
    trees are ```text)."""
    bare = [f"{f.doc}:{f.line}" for doc in documents() for f in fences(doc) if not f.lang]
    assert not bare, f"code blocks without a language: {bare}"


@pytest.mark.slow  # serve --help in a process
def test_inline_make_commands_name_real_targets_and_serve_flags():
    """`make TARGET [VAR=...]` spans: the Makefile has the target, and RUN_ARGS passes flags
    `serve` takes (`make run` runs `porter-bundle serve $(RUN_ARGS)`)."""
    import re
    import subprocess
    import sys

    makefile = (REPO / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z][\w-]*):", makefile, re.M))
    serve_help = subprocess.run(
        [str(Path(sys.executable).with_name("porter-bundle")), "serve", "--help"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    seen = 0
    for doc in documents():
        for span in inline_spans(doc):
            if not span.startswith("make"):
                continue
            words = shlex.split(span)
            if words == ["make"]:
                continue
            seen += 1
            named = [w for w in words[1:] if "=" not in w] or ["help"]
            assert set(named) <= targets, f"{doc}: `{span}`: no such make target"
            for word in words[1:]:
                if word.startswith("RUN_ARGS="):
                    for flag in re.findall(r"--[a-z][\w-]*", word):
                        assert flag in serve_help, f"{doc}: `{span}`: serve has no {flag}"
    assert seen >= 5


def test_the_scan_sees_every_document():
    names = documents()
    assert (
        "README.md" in names
        and "docs/api.md" in names
        and len(names) == 1 + len(list((REPO / "docs").glob("*.md")))
    )
    assert Path(REPO / names[1]).exists()
