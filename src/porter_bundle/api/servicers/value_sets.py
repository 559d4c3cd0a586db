"""Credential sets and parameter sets: one servicer, parameterised by the kind of set.

The two kinds have the same five RPCs (``List<Kind>s``, ``Get<Kind>``, ``Create<Kind>``,
``Update<Kind>``, ``Delete<Kind>``) with the same shapes; only the names differ, and they are
derived from the kind's title ("credential set": ``CredentialSet``, field ``credential_set``).
"""

from __future__ import annotations

from typing import Any, Generic

from porter.bundle.v1 import porter_bundle_pb2 as pb
from porter_bundle.api.errors import mapped
from porter_bundle.api.servicers.base import (
    Backend,
    Behaviour,
    Ctx,
    Servicer,
    list_args,
    page_bytes,
    require,
)
from porter_bundle.service.value_sets import SetMessage, ValueSetService


class ValueSetServicer(Servicer, Generic[SetMessage]):
    """The RPCs of one kind of set (credential or parameter sets) of porter.bundle.v1.PorterBundle."""

    def __init__(self, backend: Backend, sets: ValueSetService[SetMessage]) -> None:
        super().__init__(backend)
        self._sets: ValueSetService[SetMessage] = sets
        title = sets.kind.title
        self._kind = title.title().replace(" ", "")
        """The kind as RPC names spell it: ``CredentialSet``."""
        self._field = title.replace(" ", "_")
        """The field of a set in requests and responses: ``credential_set``."""
        get_request = getattr(pb, f"Get{self._kind}Request")
        self._revealable = "reveal_sensitive" in get_request.DESCRIPTOR.fields_by_name

    def rpcs(self) -> dict[str, Behaviour]:
        """``List<Kind>s``, ``Get<Kind>``, ``Create<Kind>``, ``Update<Kind>``, ``Delete<Kind>``."""
        return {
            f"List{self._kind}s": self.list,
            f"Get{self._kind}": self.get,
            f"Create{self._kind}": self.create,
            f"Update{self._kind}": self.update,
            f"Delete{self._kind}": self.delete,
        }

    def _response(self, verb: str, found: SetMessage | None = None) -> Any:
        cls = getattr(pb, f"{verb}{self._kind}Response")
        return cls() if found is None else cls(**{self._field: found})

    @mapped
    async def list(self, request: Any, context: Ctx) -> bytes:
        """``List<Kind>s``: a page of sets (literal credential values withheld)."""
        return page_bytes(await self._read(self._sets.list, **list_args(request)))

    @mapped
    async def get(self, request: Any, context: Ctx) -> Any:
        """``Get<Kind>``: one set; literal values with ``reveal_sensitive`` (credential sets)."""
        found = await self._read(
            self._reveals.value_set,
            self._sets,
            request.namespace,
            request.name,
            reveal=self._revealable and request.reveal_sensitive,
            caller=self.caller(f"Get{self._kind}"),
        )
        return self._response("Get", found)

    @mapped
    async def create(self, request: Any, context: Ctx) -> Any:
        """``Create<Kind>``."""
        require(request, self._field)
        return self._response(
            "Create", await self._run(self._sets.create, getattr(request, self._field))
        )

    @mapped
    async def update(self, request: Any, context: Ctx) -> Any:
        """``Update<Kind>``: the fields of the update mask (all when empty)."""
        require(request, self._field)
        updated = await self._run(
            self._sets.update, getattr(request, self._field), list(request.update_mask.paths)
        )
        return self._response("Update", updated)

    @mapped
    async def delete(self, request: Any, context: Ctx) -> Any:
        """``Delete<Kind>``."""
        await self._run(
            self._sets.delete,
            request.namespace,
            request.name,
            force=request.force,
            etag=request.etag,
        )
        return self._response("Delete")
