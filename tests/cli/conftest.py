"""The ``cli`` fixture: run a command in-process against the test server."""

from __future__ import annotations

import pytest

from porter_bundle.cli import main


@pytest.fixture
def cli(server, capsys, monkeypatch):
    """``cli(*args)`` -> (exit status, stdout, stderr), against the test server."""
    monkeypatch.setenv("PORTER_BUNDLE_SERVER", server.target)
    monkeypatch.setenv("PORTER_BUNDLE_CLIENT_CONFIG", "/nonexistent/client.yaml")
    capsys.readouterr()

    def run(*args: str) -> tuple[int, str, str]:
        code = main(list(args))
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run
