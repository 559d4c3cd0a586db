"""A typed client of porter.bundle.v1.PorterBundle: one method per thing a user does, paging
and request IDs handled. Errors are the calls' ``grpc.RpcError`` (code and details)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, Literal

from google.protobuf import field_mask_pb2, struct_pb2

from porter.bundle.v1 import porter_bundle_pb2 as pb
from porter.bundle.v1.bundle_pb2 import Bundle
from porter.bundle.v1.installation_pb2 import BundleReference, Installation
from porter.bundle.v1.porter_bundle_pb2_grpc import PorterBundleStub
from porter.bundle.v1.run_pb2 import Run
from porter.bundle.v1.value_set_pb2 import CredentialSet, ParameterSet
from porter_bundle.client import connection
from porter_bundle.client.connection import Target
from porter_bundle.ids import new_id
from porter_bundle.validation import parse_reference

CALL_TIMEOUT_SECONDS = 120.0
PAGE_SIZE = 500

SetKind = Literal["credentials", "parameters"]
ValueSet = CredentialSet | ParameterSet


def bundle_reference(text: str) -> BundleReference:
    """``repo:tag`` or ``repo@sha256:...`` as a BundleReference (ValueError when malformed)."""
    from porter_bundle.errors import InvalidArgument

    try:
        parsed = parse_reference(text)
    except InvalidArgument as exc:
        raise ValueError("; ".join(v.description for v in exc.violations)) from None
    return BundleReference(repository=parsed.repository, tag=parsed.tag, digest=parsed.digest)


def reference_text(ref: BundleReference) -> str:
    """A BundleReference as the reference text bundles are kept under: ``repo@digest``, else
    ``repo:tag``, a ``version`` being tag ``v<version>`` (as Porter names them)."""
    if ref.digest:
        return f"{ref.repository}@{ref.digest}"
    tag = ref.tag or (ref.version if ref.version.startswith("v") else f"v{ref.version}")
    return f"{ref.repository}:{tag}"


class Client:
    """Blocking calls to one server; use it as a context manager (it closes the channel)."""

    def __init__(self, target: Target, *, timeout: float = CALL_TIMEOUT_SECONDS) -> None:
        self.target = target
        self._channel = connection.channel(target)
        self._stub = PorterBundleStub(self._channel)
        self._timeout = timeout

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._channel.close()

    def _pages(self, call: Any, request: Any, field: str) -> Iterator[Any]:
        request.page_size = PAGE_SIZE
        while True:
            resp = call(request, timeout=self._timeout)
            yield from getattr(resp, field)
            if not resp.next_page_token:
                return
            request.page_token = resp.next_page_token

    # --- installations -------------------------------------------------------------------

    def installations(
        self, namespace: str = "", *, all_namespaces: bool = False
    ) -> list[Installation]:
        """Every installation of the namespace (or of all), sorted by (namespace, name)."""
        request = pb.ListInstallationsRequest(namespace=namespace, all_namespaces=all_namespaces)
        return list(self._pages(self._stub.ListInstallations, request, "installations"))

    def installation(self, namespace: str, name: str) -> Installation:
        """One installation."""
        request = pb.GetInstallationRequest(namespace=namespace, name=name)
        return self._stub.GetInstallation(request, timeout=self._timeout).installation

    def create_installation(self, installation: Installation) -> Installation:
        """Creates an installation (ALREADY_EXISTS when the name is taken)."""
        request = pb.CreateInstallationRequest(installation=installation)
        return self._stub.CreateInstallation(request, timeout=self._timeout).installation

    def set_bundle(self, namespace: str, name: str, reference: BundleReference) -> Installation:
        """Points an installation at another bundle (the next action uses it)."""
        request = pb.UpdateInstallationRequest(
            installation=Installation(namespace=namespace, name=name, bundle=reference),
            update_mask=field_mask_pb2.FieldMask(paths=["bundle"]),
        )
        return self._stub.UpdateInstallation(request, timeout=self._timeout).installation

    def delete_installation(self, namespace: str, name: str, *, force: bool = False) -> None:
        """Deletes an installation with its runs (FAILED_PRECONDITION while installed, unless
        ``force``)."""
        request = pb.DeleteInstallationRequest(namespace=namespace, name=name, force=force)
        self._stub.DeleteInstallation(request, timeout=self._timeout)

    # --- runs ----------------------------------------------------------------------------

    def runs(self, namespace: str, name: str) -> list[Run]:
        """The runs of an installation, newest first."""
        request = pb.ListInstallationRunsRequest(namespace=namespace, name=name)
        return list(self._pages(self._stub.ListInstallationRuns, request, "runs"))

    def run(self, namespace: str, name: str, run_id: str) -> Run:
        """One run of an installation (``run_id`` may be "latest")."""
        request = pb.GetInstallationRunRequest(namespace=namespace, name=name, run_id=run_id)
        return self._stub.GetInstallationRun(request, timeout=self._timeout).run

    def find_run(self, run_id: str) -> Run:
        """A run by its ID alone (run IDs are unique across installations)."""
        call = self._stub.StreamRunLogs(
            pb.StreamRunLogsRequest(run_id=run_id), timeout=self._timeout
        )
        try:
            for message in call:
                if message.WhichOneof("event") == "run":
                    return message.run
        finally:
            call.cancel()
        raise LookupError(f"the server sent no run for {run_id}")

    def outputs(
        self, namespace: str, name: str, run_id: str = "latest"
    ) -> pb.ListInstallationRunOutputsResponse:
        """The outputs of a run (default: the latest successful one)."""
        request = pb.ListInstallationRunOutputsRequest(
            namespace=namespace, name=name, run_id=run_id
        )
        return self._stub.ListInstallationRunOutputs(request, timeout=self._timeout)

    def execute(
        self,
        namespace: str,
        name: str,
        action: str,
        *,
        parameters: Mapping[str, Any] | None = None,
        parameter_sets: Sequence[str] = (),
        credential_sets: Sequence[str] = (),
        force: bool = False,
    ) -> Run:
        """Starts an action; the run, PENDING. Retried calls cannot start it twice."""
        values = struct_pb2.Struct()
        values.update(dict(parameters or {}))
        request = pb.ExecuteActionRequest(
            namespace=namespace,
            name=name,
            action=action,
            parameters=values,
            parameter_sets=list(parameter_sets),
            credential_sets=list(credential_sets),
            force=force,
            request_id=new_id(),
        )
        return self._stub.ExecuteAction(request, timeout=self._timeout).run

    def cancel(self, namespace: str, name: str, run_id: str) -> Run:
        """Cancels an active run; the run once ended."""
        request = pb.CancelRunRequest(namespace=namespace, name=name, run_id=run_id)
        return self._stub.CancelRun(request, timeout=self._timeout).run

    # --- credential and parameter sets ----------------------------------------------------

    def value_sets(
        self, kind: SetKind, namespace: str = "", *, all_namespaces: bool = False
    ) -> list[ValueSet]:
        """Every credential (or parameter) set of the namespace (or of all)."""
        if kind == "credentials":
            creds = pb.ListCredentialSetsRequest(namespace=namespace, all_namespaces=all_namespaces)
            return list(self._pages(self._stub.ListCredentialSets, creds, "credential_sets"))
        params = pb.ListParameterSetsRequest(namespace=namespace, all_namespaces=all_namespaces)
        return list(self._pages(self._stub.ListParameterSets, params, "parameter_sets"))

    def value_set(self, kind: SetKind, namespace: str, name: str) -> ValueSet:
        """One set; literal credential values come back redacted."""
        if kind == "credentials":
            creds = pb.GetCredentialSetRequest(namespace=namespace, name=name)
            return self._stub.GetCredentialSet(creds, timeout=self._timeout).credential_set
        params = pb.GetParameterSetRequest(namespace=namespace, name=name)
        return self._stub.GetParameterSet(params, timeout=self._timeout).parameter_set

    def delete_value_set(
        self, kind: SetKind, namespace: str, name: str, *, force: bool = False
    ) -> None:
        """Deletes a set (FAILED_PRECONDITION while used, unless ``force``)."""
        if kind == "credentials":
            creds = pb.DeleteCredentialSetRequest(namespace=namespace, name=name, force=force)
            self._stub.DeleteCredentialSet(creds, timeout=self._timeout)
        else:
            params = pb.DeleteParameterSetRequest(namespace=namespace, name=name, force=force)
            self._stub.DeleteParameterSet(params, timeout=self._timeout)

    def export_value_set(self, kind: SetKind, namespace: str, name: str, *, json: bool) -> str:
        """A set as Porter's document (YAML, or JSON)."""
        fmt = pb.DOCUMENT_FORMAT_JSON if json else pb.DOCUMENT_FORMAT_YAML
        if kind == "credentials":
            creds = pb.ExportCredentialSetRequest(namespace=namespace, name=name, format=fmt)
            return self._stub.ExportCredentialSet(creds, timeout=self._timeout).document
        params = pb.ExportParameterSetRequest(namespace=namespace, name=name, format=fmt)
        return self._stub.ExportParameterSet(params, timeout=self._timeout).document

    # --- bundles -------------------------------------------------------------------------

    def bundles(self) -> list[Bundle]:
        """Every bundle the server knows, sorted by reference."""
        return list(self._pages(self._stub.ListBundles, pb.ListBundlesRequest(), "bundles"))

    def bundle(self, reference: str) -> Bundle:
        """One bundle with its bundle.json."""
        request = pb.GetBundleRequest(reference=reference)
        return self._stub.GetBundle(request, timeout=self._timeout).bundle

    def parameter_types(self, reference: str) -> dict[str, str]:
        """The JSON type of each parameter of the bundle at ``reference`` ("" when its
        definition names none), from its bundle.json."""
        doc = json.loads(self.bundle(reference).bundle_json or "{}")
        definitions = doc.get("definitions", {})
        return {
            name: str(definitions.get(param.get("definition", ""), {}).get("type", ""))
            for name, param in doc.get("parameters", {}).items()
        }

    def register_bundle(self, reference: str, bundle_json: str) -> Bundle:
        """Registers a bundle.json under a reference."""
        request = pb.CreateBundleRequest(reference=reference, bundle_json=bundle_json)
        return self._stub.CreateBundle(request, timeout=self._timeout).bundle

    def pull_bundle(self, reference: str) -> Bundle:
        """Has the server pull a bundle from its OCI registry now."""
        request = pb.PullBundleRequest(reference=reference)
        return self._stub.PullBundle(request, timeout=self._timeout).bundle

    def delete_bundle(self, reference: str) -> None:
        """Removes a bundle reference."""
        self._stub.DeleteBundle(pb.DeleteBundleRequest(reference=reference), timeout=self._timeout)


__all__ = [
    "CALL_TIMEOUT_SECONDS",
    "Client",
    "SetKind",
    "ValueSet",
    "bundle_reference",
    "reference_text",
]
