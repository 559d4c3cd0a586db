"""The ``porter-bundle`` command line, in Porter's shape (``porter-bundle GROUP VERB``), built on
the typed client library (:mod:`porter_bundle.client`). One module per command group;
:mod:`.main` holds the root group and the entry point, :mod:`.exit_codes` the one exit status
table, :mod:`.output` the ``-o`` formats, :mod:`.context` the connection flags and contexts."""

from __future__ import annotations

from porter_bundle.cli.main import main

__all__ = ["main"]
