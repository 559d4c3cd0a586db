"""CNAB claims and claim results (CNAB Claims 1.0.0) served from the runs.

A run is a claim (same ID) and each state it reached a claim result; both are stored as the
spec's JSON when the run changes state (:mod:`porter_bundle.service.runs.recording`). Runs
recorded before claims were stored have no stored documents: theirs are rebuilt here from
the run (its bundle.json when still known) and its current state.
"""

from __future__ import annotations

import builtins
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from porter.bundle.v1.claim_pb2 import Claim, ClaimResult
from porter.bundle.v1.run_pb2 import Output, Run, RunState
from porter_bundle import store
from porter_bundle.errors import NotFound, Violations
from porter_bundle.ids import is_id
from porter_bundle.service.claim_documents import (
    STATES_BY_STATUS,
    claim_document,
    placeholder_bundle,
    result_document,
)
from porter_bundle.service.paging import fingerprint, finish_page, parse_page_request
from porter_bundle.service.runs import action_name, run_id_not_found
from porter_bundle.store import ClaimFilter, ClaimRecord, Database, Page, PageSpec
from porter_bundle.validation import check_address, check_namespace

MAX_ACTION_LENGTH = 253


@dataclass(frozen=True)
class ClaimQuery:
    """The filters of ListClaims (times: None = unbounded)."""

    namespace: str = ""
    all_namespaces: bool = False
    installation: str = ""
    action: str = ""
    result: int = 0
    created_after: datetime | None = None
    created_before: datetime | None = None
    visible: frozenset[str] | None = None
    """Namespaces a list over every namespace may show (None: all)."""


@dataclass(frozen=True)
class ClaimPage:
    """One page of claims, newest first."""

    claims: list[Claim]
    next_page_token: str
    total_size: int


class ClaimService:
    """Answers ListClaims, GetClaim, ListClaimResults and GetClaimResult (reads only)."""

    def __init__(self, db: Database) -> None:
        self._store = db

    def list(self, query: ClaimQuery, *, page_size: int, page_token: str, skip: int) -> ClaimPage:
        """A page of claims across installations, newest first."""
        flt = _claim_filter(query)
        req = parse_page_request(
            page_size,
            page_token,
            skip,
            filters_fingerprint=fingerprint(
                "claims",
                flt.namespace,
                flt.installation,
                flt.action,
                flt.state,
                flt.min_id,
                flt.max_id,
                flt.visible,
            ),
            key_length=1,
        )
        with self._store.read() as conn:
            records, after = store.list_claims(conn, flt, req.spec)
            claims = [_claim(conn, r) for r in records]
            done = finish_page(
                req,
                Page([], None if after is None else (after,)),
                lambda: store.count_claims(conn, flt),
                carry_total=True,
            )
        return ClaimPage(claims, done.next_page_token, done.total_size)

    def get(self, namespace: str, name: str, claim_id: str) -> Claim:
        """One claim, by its ID (and, when ``name`` is set, its installation)."""
        with self._store.read() as conn:
            return _claim(conn, self._find(conn, namespace, name, claim_id))

    def results(self, namespace: str, name: str, claim_id: str) -> builtins.list[ClaimResult]:
        """Every result of a claim, oldest first."""
        with self._store.read() as conn:
            record = self._find(conn, namespace, name, claim_id)
            docs = store.list_claim_results(conn, claim_id.upper())
            if not docs:
                docs = [_rebuilt_result(conn, Run.FromString(record.run_doc))]
        return [claim_result(doc) for doc in docs]

    def result(self, namespace: str, name: str, claim_id: str, result_id: str) -> ClaimResult:
        """One result of a claim; NOT_FOUND when the claim has no such result."""
        if not is_id(result_id):
            v = Violations()
            v.add("result_id", "must be a claim result ID (a ULID)")
            v.raise_if_any()
        for found in self.results(namespace, name, claim_id):
            if found.id == result_id.upper():
                return found
        raise result_not_found(claim_id.upper(), result_id.upper())

    def latest(
        self,
        namespace: str,
        name: str,
        *,
        action: str = "",
        exclude_action: str = "",
        state: int = 0,
    ) -> tuple[Claim, ClaimResult] | None:
        """The installation's most recent claim matching the filters and its latest result,
        or None when it has none."""
        check_address(namespace, name)
        flt = ClaimFilter(
            namespace=namespace,
            installation=name,
            action=action,
            exclude_action=exclude_action,
            state=state,
        )
        with self._store.read() as conn:
            records, _ = store.list_claims(conn, flt, PageSpec(limit=1))
            if not records:
                return None
            claim = _claim(conn, records[0])
            docs = store.list_claim_results(conn, claim.id)
            last = docs[-1] if docs else _rebuilt_result(conn, Run.FromString(records[0].run_doc))
        return claim, claim_result(last)

    def _find(self, conn: Any, namespace: str, name: str, claim_id: str) -> ClaimRecord:
        v = Violations()
        if name:
            check_address(namespace, name)
        elif namespace:
            v.add("name", "is required when namespace is set")
        if not is_id(claim_id):
            v.add("claim_id", "must be a claim ID (a run's ULID)")
        v.raise_if_any()
        record = store.get_claim(conn, claim_id.upper())
        if record is None:
            raise run_id_not_found(claim_id.upper())
        run = Run.FromString(record.run_doc)
        if name and (run.namespace, run.installation) != (namespace, name):
            raise run_id_not_found(run.id)
        return record


def result_not_found(claim_id: str, result_id: str) -> NotFound:
    """The error of a claim result that is not there."""
    return NotFound(
        f"claim {claim_id} has no result {result_id}",
        reason="CLAIM_RESULT_NOT_FOUND",
        metadata={"claim_id": claim_id, "result_id": result_id},
    )


def claim_result(doc: str) -> ClaimResult:
    """The ClaimResult message of a stored result document."""
    parsed = json.loads(doc)
    created = Timestamp()
    created.FromJsonString(parsed["created"])
    return ClaimResult(
        id=parsed["id"],
        claim_id=parsed["claimId"],
        status=STATES_BY_STATUS.get(parsed["status"], 0),  # type: ignore[arg-type]
        message=parsed.get("message", ""),
        create_time=created,
        result_json=doc,
    )


def _claim(conn: Any, record: ClaimRecord) -> Claim:
    run = Run.FromString(record.run_doc)
    action = record.action or action_name(run)
    revision = record.revision or run.id
    doc = record.doc
    if doc is None:
        bundle_text = store.get_bundle_document(conn, run.bundle_digest)
        bundle = placeholder_bundle(run) if bundle_text is None else json.loads(bundle_text)
        doc = json.dumps(
            claim_document(
                run, action, bundle, revision=revision, withheld=run.sensitive_parameters
            )
        )
    return Claim(
        id=run.id,
        namespace=run.namespace,
        installation=run.installation,
        action=action,
        revision=revision,
        bundle_reference=run.bundle_reference,
        result=run.state,
        create_time=run.create_time,
        claim_json=doc,
    )


def _rebuilt_result(conn: Any, run: Run) -> str:
    """The result of a run recorded before results were stored: its current state."""
    outputs = [Output.FromString(d) for d in store.list_output_docs(conn, run.id)]
    when = next(
        (t for t in (run.complete_time, run.start_time, run.create_time) if t.seconds or t.nanos),
        run.create_time,
    )
    return json.dumps(result_document(run, run.id, when.ToDatetime(tzinfo=UTC), outputs))


def _claim_filter(query: ClaimQuery) -> ClaimFilter:
    v = Violations()
    if not query.all_namespaces:
        check_namespace(v, "namespace", query.namespace)
    if len(query.installation) > 253:
        v.add("installation", "is longer than 253 characters")
    if len(query.action) > MAX_ACTION_LENGTH:
        v.add("action", f"is longer than {MAX_ACTION_LENGTH} characters")
    if query.result and query.result not in RunState.values():
        v.add("result", "is not a run state")
    after, before = query.created_after, query.created_before
    if after is not None and before is not None and after >= before:
        v.add("created_before", "must be later than created_after")
    v.raise_if_any()
    return ClaimFilter(
        namespace=None if query.all_namespaces else query.namespace,
        visible=query.visible if query.all_namespaces else None,
        installation=query.installation,
        action=query.action,
        state=query.result,
        min_id="" if after is None else store.id_floor(_epoch_ms(after)),
        max_id="" if before is None else store.id_floor(_epoch_ms(before)),
    )


def _epoch_ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)


__all__ = ["ClaimPage", "ClaimQuery", "ClaimService", "claim_result", "result_not_found"]
