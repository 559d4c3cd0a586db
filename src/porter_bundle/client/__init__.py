"""The typed client library: talks to a running server over gRPC. The ``porter-bundle``
commands (:mod:`porter_bundle.cli`) are built on it and nothing here knows about them.

- :mod:`.connection`: :class:`Target` (server, TLS, token) and the channels made from it;
- :mod:`.api`: :class:`Client`, one method per call a user makes;
- :mod:`.follow`: live logs and run states that survive a server restart;
- :mod:`.apply`: Porter documents from files and directories;
- :mod:`.publish`: a bundle.json pushed to an OCI registry (no server involved).
"""

from __future__ import annotations

from porter_bundle.client.api import Client, SetKind, ValueSet, bundle_reference, reference_text
from porter_bundle.client.connection import DEFAULT_SERVER, Target

__all__ = [
    "DEFAULT_SERVER",
    "Client",
    "SetKind",
    "Target",
    "ValueSet",
    "bundle_reference",
    "reference_text",
]
