"""Applying Porter documents to a server, Porter's way (``porter-bundle apply FILE...``).

Each argument is a YAML or JSON file (several documents separated by ``---``) or a
directory (its ``*.yaml``, ``*.yml`` and ``*.json`` files, recursively, in name order).
Each document is an Installation, CredentialSet or ParameterSet (by its ``schemaType``, a
Porter operator resource's ``kind``, or its fields). Credential and parameter sets go
first, then installations, each in the order read, so an installation finds the sets it
names. One line per document says what was decided, and its warnings; the exit status is
1 when any failed. ``-n/--namespace`` places the documents that name no namespace.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import json_format
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from porter.bundle.v1 import porter_bundle_pb2 as pb
from porter.bundle.v1 import porter_bundle_pb2_grpc
from porter_bundle.client import connection
from porter_bundle.client.connection import Target
from porter_bundle.documents import DocumentKind, detect_kind, parse_stream, porter_value
from porter_bundle.documents.validate import unwrap
from porter_bundle.errors import InvalidArgument

MAX_FILE_BYTES = 64 * 1024 * 1024
SUFFIXES = (".yaml", ".yml", ".json")
CALL_TIMEOUT_SECONDS = 120.0
_ORDER = {
    DocumentKind.CREDENTIAL_SET: 0,
    DocumentKind.PARAMETER_SET: 0,
    DocumentKind.INSTALLATION: 1,
}


@dataclass
class _Item:
    label: str
    kind: DocumentKind | None = None
    value: Any = None
    problem: str = ""


@dataclass(frozen=True)
class ApplyReport:
    """How applying went: whether any document failed, and whether the server could not be
    reached at all (then the documents after the first call were not tried)."""

    failed: bool
    unreachable: bool = False


def apply_paths(
    target: Target,
    paths: Sequence[str],
    *,
    dry_run: bool = False,
    force: bool = False,
    namespace: str = "",
    out: Callable[[str], None],
) -> ApplyReport:
    """Applies every document in ``paths``, one line (or more) to ``out`` per document;
    ``namespace`` is that of the documents naming none (a document's own, even "", wins)."""
    items = [in_namespace(i, namespace) for i in _read(paths)]
    failed = False
    for item in items:
        if item.problem:
            out(f"{item.label}: error: {item.problem}")
            failed = True
    todo = sorted((i for i in items if not i.problem), key=lambda i: _ORDER[i.kind])  # type: ignore[index]
    if not todo:
        return ApplyReport(failed)
    with connection.channel(target) as channel:
        stub = porter_bundle_pb2_grpc.PorterBundleStub(channel)
        for item in todo:
            try:
                lines = _apply(stub, item, dry_run=dry_run, force=force)
            except grpc.RpcError as err:
                for line in _error_lines(item, err):
                    out(line)
                if err.code() == grpc.StatusCode.UNAVAILABLE:
                    return ApplyReport(True, unreachable=True)
                failed = True
                continue
            for line in lines:
                out(line)
    return ApplyReport(failed)


# --- reading ------------------------------------------------------------------------------


def _files(arguments: Sequence[str]) -> Iterator[tuple[str, Path | None, str]]:
    for arg in arguments:
        path = Path(arg)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in SUFFIXES)
            if not found:
                yield arg, None, f"no {', '.join(SUFFIXES)} files in the directory"
            for p in found:
                yield str(p), p, ""
        elif path.is_file():
            yield arg, path, ""
        else:
            yield arg, None, "no such file or directory"


def _read(arguments: Sequence[str]) -> Iterator[_Item]:
    for label, path, problem in _files(arguments):
        if path is None:
            yield _Item(label, problem=problem)
            continue
        try:
            raw = path.read_bytes()
            docs = parse_stream(raw, max_bytes=MAX_FILE_BYTES)
        except OSError as exc:
            yield _Item(label, problem=exc.strerror or str(exc))
            continue
        except InvalidArgument as exc:
            yield _Item(label, problem=_violations_text(exc))
            continue
        if not docs:
            yield _Item(label, problem="no document in the file")
        for doc in docs:
            name = f"{label}#{doc.index}" if len(docs) > 1 else label
            kind = detect_kind(doc.value)
            if kind is None:
                why = unwrap(doc.value)[3] or (
                    "cannot tell the type of document; give it a schemaType "
                    "(Installation, CredentialSet or ParameterSet)"
                )
                yield _Item(name, problem=why)
            else:
                yield _Item(name, kind, porter_value(doc))


def in_namespace(item: _Item, namespace: str) -> _Item:
    """The item, its document in ``namespace`` when it names none (Porter's apply reads the
    file's ``namespace`` field when present, else the ``-n`` flag)."""
    if not namespace or item.problem:
        return item
    body, prefix, _, problem = unwrap(item.value)
    if problem or "namespace" in body:
        return item
    value = {**body, "namespace": namespace}
    if prefix:
        value = {**item.value, prefix: value}
    return _Item(item.label, item.kind, value)


def _violations_text(exc: InvalidArgument) -> str:
    return "; ".join(f"{v.field}: {v.description}" for v in exc.violations) or exc.message


# --- applying -----------------------------------------------------------------------------


def _apply(stub: Any, item: _Item, *, dry_run: bool, force: bool) -> list[str]:
    document = json.dumps(item.value).encode()
    prefix = "(dry run) " if dry_run else ""
    if item.kind is DocumentKind.INSTALLATION:
        resp = stub.ApplyInstallation(
            pb.ApplyInstallationRequest(document=document, dry_run=dry_run, force=force),
            timeout=CALL_TIMEOUT_SECONDS,
        )
        inst = resp.installation
        decision = pb.ApplyDecision.Name(resp.decision).removeprefix("APPLY_DECISION_").lower()
        line = (
            f"{prefix}{item.label}: Installation {_address(inst.namespace, inst.name)}: "
            f"{_outcome(resp)}; {decision}: {resp.reason}"
        )
        if resp.HasField("run"):
            line += f" (run {resp.run.id} started)"
        lines = [line, *(_change_line(c) for c in resp.changes)]
        return [*lines, *(f"    warning: {w}" for w in resp.warnings)]
    call: Callable[..., Any]
    request: Any
    if item.kind is DocumentKind.CREDENTIAL_SET:
        call, request = stub.ApplyCredentialSet, pb.ApplyCredentialSetRequest
    else:
        call, request = stub.ApplyParameterSet, pb.ApplyParameterSetRequest
    resp = call(request(document=document, dry_run=dry_run), timeout=CALL_TIMEOUT_SECONDS)
    resource = (
        resp.credential_set if item.kind is DocumentKind.CREDENTIAL_SET else resp.parameter_set
    )
    kind = item.kind.value if item.kind else ""
    line = f"{prefix}{item.label}: {kind} {_address(resource.namespace, resource.name)}: {_outcome(resp)}"
    return [line, *(f"    warning: {w}" for w in resp.warnings)]


def _outcome(resp: Any) -> str:
    outcome = pb.ApplyOutcome.Name(resp.outcome).removeprefix("APPLY_OUTCOME_").lower()
    if resp.changed_fields and outcome == "updated":
        outcome += f" ({', '.join(resp.changed_fields)})"
    return outcome


def _change_line(change: pb.ApplyChange) -> str:
    if change.sensitive:
        return f"    {change.field}: *** -> *** (sensitive)"

    def show(present: bool, value: Any) -> str:
        if not present:
            return "(none)"
        return json.dumps(json_format.MessageToDict(value), separators=(",", ":"))

    current = show(change.HasField("current"), change.current)
    desired = show(change.HasField("desired"), change.desired)
    return f"    {change.field}: {current} -> {desired}"


def _address(namespace: str, name: str) -> str:
    return f"{namespace}/{name}" if namespace else f"{name} (global namespace)"


def _error_lines(item: _Item, err: grpc.RpcError) -> list[str]:
    code = err.code().name if hasattr(err, "code") else "UNKNOWN"
    message = err.details() if hasattr(err, "details") else str(err)
    lines = [f"{item.label}: error: {code}: {message}"]
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    for detail in status.details if status is not None else ():
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            lines = [f"{item.label}: error: {code}"]
            lines += [f"    {v.field}: {v.description}" for v in bad.field_violations]
    return lines
