"""Which runs a caller may see when it addresses one by its ID alone.

A run is addressed by (namespace, installation, run ID) or, for the live streams, by its
ID alone (IDs are unique across installations). The interceptor checks the namespace of
the first form before the call; the second has no namespace until the run is found, so the
check happens here: a run in a namespace the caller may not view is NOT_FOUND, exactly as a
missing run is, so that its existence is not disclosed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from porter_bundle.auth.authz import Access
from porter_bundle.auth.roles import VIEWER
from porter_bundle.service.runs import RunService, run_id_not_found

Read = Callable[..., Awaitable[Any]]
"""How a blocking read is awaited (the API's read: inline or on the worker pool)."""


async def check_run_by_id(
    runs: RunService, namespace: str, name: str, run_id: str, access: Access, *, read: Read
) -> None:
    """NOT_FOUND when the run is addressed by ID alone (no ``name`` nor ``namespace``), callers
    are authenticated and ``access`` may not view the run's namespace; nothing otherwise (no
    read either: a run addressed by name was checked by the interceptor)."""
    if not access.authenticated or name or namespace:
        return
    run = await read(runs.locate, "", "", run_id)
    if not access.may(VIEWER, run.namespace):
        raise run_id_not_found(run.id)


__all__ = ["check_run_by_id"]
