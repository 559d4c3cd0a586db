"""CNAB claims and claim results (ListClaims, GetClaim, ListClaimResults, GetClaimResult) and
an installation's CNAB status (GetInstallationStatus).

A claim addressed by its ID alone is checked against the caller's namespaces once found
(a claim is a run: :func:`~porter_bundle.service.visibility.check_run_by_id`).
"""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp

from porter.bundle.v1 import porter_bundle_pb2 as pb
from porter_bundle.api.errors import mapped
from porter_bundle.api.servicers.base import Ctx, Servicer
from porter_bundle.auth import authz
from porter_bundle.auth.roles import OPERATOR
from porter_bundle.errors import FieldViolation, InvalidArgument
from porter_bundle.service.claims import ClaimQuery
from porter_bundle.service.visibility import check_run_by_id


class ClaimServicer(Servicer):
    """The claim RPCs of porter.bundle.v1.PorterBundle."""

    @mapped
    async def ListClaims(
        self, request: pb.ListClaimsRequest, context: Ctx
    ) -> pb.ListClaimsResponse:
        query = ClaimQuery(
            namespace=request.namespace,
            all_namespaces=request.all_namespaces,
            installation=request.installation,
            action=request.action,
            result=request.result,
            created_after=_time(request, "created_after"),
            created_before=_time(request, "created_before"),
            visible=authz.current().visible,
        )
        page = await self._read(
            self._s.claims.list,
            query,
            page_size=request.page_size,
            page_token=request.page_token,
            skip=request.skip,
        )
        return pb.ListClaimsResponse(
            claims=page.claims, next_page_token=page.next_page_token, total_size=page.total_size
        )

    @mapped
    async def GetClaim(self, request: pb.GetClaimRequest, context: Ctx) -> pb.GetClaimResponse:
        await self._check(request)
        claim = await self._read(
            self._s.claims.get, request.namespace, request.name, request.claim_id
        )
        return pb.GetClaimResponse(claim=claim)

    @mapped
    async def ListClaimResults(
        self, request: pb.ListClaimResultsRequest, context: Ctx
    ) -> pb.ListClaimResultsResponse:
        await self._check(request)
        results = await self._read(
            self._s.claims.results, request.namespace, request.name, request.claim_id
        )
        return pb.ListClaimResultsResponse(results=results)

    @mapped
    async def GetClaimResult(
        self, request: pb.GetClaimResultRequest, context: Ctx
    ) -> pb.GetClaimResultResponse:
        await self._check(request)
        result = await self._read(
            self._s.claims.result,
            request.namespace,
            request.name,
            request.claim_id,
            request.result_id,
        )
        return pb.GetClaimResultResponse(result=result)

    @mapped
    async def GetInstallationStatus(
        self, request: pb.GetInstallationStatusRequest, context: Ctx
    ) -> pb.GetInstallationStatusResponse:
        access = authz.current()
        status = await self._s.status.get(
            request.namespace,
            request.name,
            refresh=request.refresh,
            authorize_run=lambda namespace: access.require(OPERATOR, namespace),
        )
        return pb.GetInstallationStatusResponse(status=status)

    async def _check(
        self,
        request: pb.GetClaimRequest | pb.ListClaimResultsRequest | pb.GetClaimResultRequest,
    ) -> None:
        await check_run_by_id(
            self._s.runs,
            request.namespace,
            request.name,
            request.claim_id,
            authz.current(),
            read=self._read,
        )


def _time(request: pb.ListClaimsRequest, field: str) -> datetime | None:
    """A time filter of the request, None when unset; INVALID_ARGUMENT when it is no valid
    timestamp (nanos out of range, before year 1 or after 9999)."""
    if not request.HasField(field):  # type: ignore[arg-type]
        return None
    ts: Timestamp = getattr(request, field)
    try:
        return ts.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError, OSError):
        raise InvalidArgument.from_violations(
            [FieldViolation(field, "is not a valid timestamp")]
        ) from None
