"""What each agent command does, against porter-bundle's v1 API.

Porter's behaviour is the model (porter ``cmd/porter``, ``pkg/porter``): ``apply`` of a
document, ``delete`` of a missing set succeeds, ``list -o json`` prints Porter's JSON shapes,
and ``installation apply`` waits for the action it started and prints its log.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import grpc
import yaml

from installation.v1alpha1 import installation_pb2 as legacy_pb
from porter.bundle.v1 import porter_bundle_pb2 as pb
from porter.bundle.v1 import porter_bundle_pb2_grpc, run_pb2
from porter.v1alpha1 import porter_pb2_grpc
from porter_bundle import documents as docs
from porter_bundle.agent.flags import Parsed, UsageError
from porter_bundle.agent.home import ServerConfig
from porter_bundle.client import connection, follow
from porter_bundle.client.connection import Target

CALL_TIMEOUT_SECONDS = 120.0
# How long `installation apply` keeps calling again while the server is unavailable.
RECONNECT_SECONDS = 300.0
LABEL_PREFIXES = ("getporter.org/", "porter.sh/")
REQUEST_ID_LABELS = ("resourceKind", "resourceName", "resourceGeneration", "retry")
MAX_REQUEST_ID = 120


class CommandFailed(Exception):
    """The command failed; the message is what Porter would print after ``Error: ``."""


class Context:
    """What a command needs: the server, the environment and the output streams."""

    def __init__(
        self, server: ServerConfig, env: Mapping[str, str], out: TextIO, err: TextIO
    ) -> None:
        self.server = server
        self.env = env
        self.out = out
        self.err = err

    def target(self) -> Target:
        """The server the agent talks to, as the client library addresses it."""
        c = self.server
        return Target(
            server=c.server,
            token_file=c.token_file,
            token=c.token,
            tls=c.tls,
            tls_ca=c.tls_ca,
            tls_cert=c.tls_cert,
            tls_key=c.tls_key,
        )

    def stub(self, channel: grpc.Channel) -> porter_bundle_pb2_grpc.PorterBundleStub:
        return porter_bundle_pb2_grpc.PorterBundleStub(channel)

    def namespace(self, parsed: Parsed) -> str:
        """``-n`` when given (also ``-n ""``), else the PorterConfig's ``namespace``."""
        if "namespace" in parsed.given:
            return str(parsed.namespace)
        return self.server.namespace


def _rpc_message(err: grpc.RpcError) -> str:
    code = err.code().name if hasattr(err, "code") else "UNKNOWN"
    details = err.details() if hasattr(err, "details") else str(err)
    return f"{code}: {details}"


def read_document(path: str) -> dict[str, Any]:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise CommandFailed(f"could not read file {path}: {exc.strerror}") from None
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CommandFailed(f"could not parse file {path}: {exc}") from None
    if not isinstance(value, dict):
        raise CommandFailed(f"could not parse file {path}: not a YAML or JSON mapping")
    return value


def _with_namespace(doc: dict[str, Any], namespace: str, given: bool) -> bytes:
    """The document as JSON bytes; its own namespace beats ``-n``, which fills an empty one."""
    spec = doc.get("spec")
    body: dict[str, Any] = spec if isinstance(spec, dict) else doc
    if given and not body.get("namespace"):
        body["namespace"] = namespace
    return json.dumps(doc).encode()


def _one_arg(parsed: Parsed, what: str) -> str:
    if len(parsed.args) != 1:
        raise UsageError(f"expected exactly one {what}, got {len(parsed.args)}")
    return parsed.args[0]


# --- installation apply ---------------------------------------------------------------------


def request_id(env: Mapping[str, str]) -> str:
    """The operator's AgentAction, as a request ID: the same for every re-run of one action
    (pod retries, a Job recreated after its TTL), different for a new generation or retry
    annotation. "" outside the operator (no resource labels in ``LABELS``)."""
    labels: dict[str, str] = {}
    for item in env.get("LABELS", "").split():
        key, _, value = item.partition("=")
        for prefix in LABEL_PREFIXES:
            if key.startswith(prefix):
                labels.setdefault(key.removeprefix(prefix), value)
    if "resourceKind" not in labels or "resourceName" not in labels:
        return ""
    parts = [env.get("KUBE_NAMESPACE", ""), *(labels.get(k, "") for k in REQUEST_ID_LABELS)]
    readable = "k8s/" + "/".join(parts)
    if len(readable) <= MAX_REQUEST_ID:
        return readable
    return "k8s/" + hashlib.sha256("\0".join(parts).encode()).hexdigest()


def installation_apply(ctx: Context, parsed: Parsed) -> int:
    path = _one_arg(parsed, "file")
    doc = read_document(path)
    document = _with_namespace(doc, ctx.namespace(parsed), "namespace" in parsed.given)
    with connection.channel(ctx.target()) as channel:
        try:
            resp = ctx.stub(channel).ApplyInstallation(
                pb.ApplyInstallationRequest(
                    document=document,
                    dry_run=bool(parsed.dry_run),
                    force=bool(parsed.force),
                    request_id=request_id(ctx.env),
                ),
                timeout=CALL_TIMEOUT_SECONDS,
            )
        except grpc.RpcError as err:
            raise CommandFailed(_rpc_message(err)) from None
    for warning in resp.warnings:
        print(f"WARNING: {warning}", file=ctx.err)
    inst = resp.installation
    where = f"{inst.namespace}/{inst.name}" if inst.namespace else inst.name
    if parsed.dry_run:
        print(f"(dry run) {where}: {resp.reason}", file=ctx.out, flush=True)
        return 0
    if not resp.HasField("run"):
        print("The installation is already up-to-date.", file=ctx.out, flush=True)
        return 0
    run = resp.run
    action = run.custom_action or run_pb2.Action.Name(run.action).removeprefix("ACTION_").lower()
    print(f"{action} {where}: {resp.reason} (run {run.id})", file=ctx.out, flush=True)
    return _follow_run(ctx, run.id)


def _follow_run(ctx: Context, run_id: str) -> int:
    out = getattr(ctx.out, "buffer", None)

    def write(data: bytes) -> None:
        if out is not None:
            out.write(data)
        else:
            ctx.out.write(data.decode(errors="replace"))
        (out or ctx.out).flush()

    try:
        final = asyncio.run(
            follow.follow_logs(
                ctx.target(),
                run_id=run_id,
                follow=True,
                write=write,
                notice=lambda text: print(text, file=ctx.err, flush=True),
                reconnect=RECONNECT_SECONDS,
            )
        )
    except (grpc.RpcError, follow.GaveUp) as exc:
        raise CommandFailed(f"could not follow run {run_id}: {exc}") from None
    if final is not None and final.state == run_pb2.RUN_STATE_SUCCEEDED:
        return 0
    raise CommandFailed(f"run {run_id} did not succeed")


def installation_outputs_list(ctx: Context, parsed: Parsed) -> int:
    """Porter's outputs of an installation: for each name, the value of the most recent run
    that produced it (the legacy call implements that rule), as Porter's DisplayValues."""
    name = parsed.installation or (parsed.args[0] if parsed.args else "")
    if not name:
        raise UsageError("an installation name is required (--installation)")
    namespace = ctx.namespace(parsed)
    with connection.channel(ctx.target()) as channel:
        try:
            resp = porter_pb2_grpc.PorterStub(channel).ListInstallationLatestOutputs(
                legacy_pb.ListInstallationLatestOutputRequest(name=name, namespace=namespace),
                timeout=CALL_TIMEOUT_SECONDS,
            )
        except grpc.RpcError as err:
            raise CommandFailed(_rpc_message(err)) from None
    values = [
        {"name": o.name, "type": o.type, "sensitive": o.sensitive, "value": _display_value(o)}
        for o in resp.outputs
    ]
    print_listing(ctx, parsed, values, ("name", "type", "value"))
    return 0


def _display_value(output: legacy_pb.PorterValue) -> Any:
    """The value as Porter's JSON shows it: strings as they are, other types parsed back from
    the JSON text the legacy API renders them as; None when withheld (sensitive)."""
    if not output.HasField("value"):
        return None
    text = output.value.string_value
    if output.type in ("integer", "number", "boolean", "object", "array"):
        try:
            return json.loads(text)
        except ValueError:
            return text
    return text


# --- credential and parameter sets ----------------------------------------------------------


@dataclass(frozen=True)
class _SetKind:
    """The v1 calls and messages of credential or parameter sets (``kind``: Porter's noun)."""

    noun: str
    resource: str
    """CredentialSet or ParameterSet: the RPC names are built from it."""
    field: str
    """The resource's field in responses (``credential_set``)."""
    document: Callable[[Any], dict[str, Any]]

    def call(self, stub: Any, verb: str, **request: Any) -> Any:
        method = f"{verb}{self.resource}s" if verb == "List" else f"{verb}{self.resource}"
        message = getattr(pb, f"{method}Request")(**request)
        return getattr(stub, method)(message, timeout=CALL_TIMEOUT_SECONDS)


_SETS = {
    "credentials": _SetKind(
        "credential set", "CredentialSet", "credential_set", docs.from_credential_set
    ),
    "parameters": _SetKind(
        "parameter set", "ParameterSet", "parameter_set", docs.from_parameter_set
    ),
}


def set_apply(kind: str) -> Callable[[Context, Parsed], int]:
    sets = _SETS[kind]

    def command(ctx: Context, parsed: Parsed) -> int:
        doc = read_document(_one_arg(parsed, "file"))
        document = _with_namespace(doc, ctx.namespace(parsed), "namespace" in parsed.given)
        with connection.channel(ctx.target()) as channel:
            try:
                resp = sets.call(ctx.stub(channel), "Apply", document=document)
            except grpc.RpcError as err:
                raise CommandFailed(_rpc_message(err)) from None
        for warning in resp.warnings:
            print(f"WARNING: {warning}", file=ctx.err)
        resource = getattr(resp, sets.field)
        print(f"Applied {resource.namespace}/{resource.name} {sets.noun}", file=ctx.out, flush=True)
        return 0

    return command


def set_delete(kind: str) -> Callable[[Context, Parsed], int]:
    sets = _SETS[kind]

    def command(ctx: Context, parsed: Parsed) -> int:
        name = _one_arg(parsed, "name")
        with connection.channel(ctx.target()) as channel:
            try:
                # Porter deletes a set whatever uses it: force, so the operator's delete succeeds.
                sets.call(
                    ctx.stub(channel),
                    "Delete",
                    namespace=ctx.namespace(parsed),
                    name=name,
                    force=True,
                )
            except grpc.RpcError as err:
                if err.code() != grpc.StatusCode.NOT_FOUND:  # Porter: a missing set is fine
                    raise CommandFailed(_rpc_message(err)) from None
        return 0

    return command


def set_list(kind: str) -> Callable[[Context, Parsed], int]:
    sets = _SETS[kind]

    def command(ctx: Context, parsed: Parsed) -> int:
        namespace = ctx.namespace(parsed)
        every = bool(parsed.all_namespaces) or namespace == "*"
        found: list[dict[str, Any]] = []
        token = ""
        with connection.channel(ctx.target()) as channel:
            while True:
                try:
                    resp = sets.call(
                        ctx.stub(channel),
                        "List",
                        namespace="" if every else namespace,
                        all_namespaces=every,
                        page_size=500,
                        page_token=token,
                    )
                except grpc.RpcError as err:
                    raise CommandFailed(_rpc_message(err)) from None
                found += [sets.document(s) for s in getattr(resp, sets.field + "s")]
                token = resp.next_page_token
                if not token:
                    break
        print_listing(ctx, parsed, found, ("namespace", "name"))
        return 0

    return command


# --- output ---------------------------------------------------------------------------------


def print_listing(
    ctx: Context, parsed: Parsed, items: list[dict[str, Any]], columns: tuple[str, ...]
) -> None:
    fmt = str(parsed.output or "plaintext")
    if fmt == "json":
        print(json.dumps(items, indent=2), file=ctx.out)
    elif fmt == "yaml":
        print(yaml.safe_dump(items, sort_keys=False), end="", file=ctx.out)
    elif fmt in ("plaintext", "table"):
        print("\t".join(c.upper() for c in columns), file=ctx.out)
        for item in items:
            print("\t".join(_cell(item.get(c)) for c in columns), file=ctx.out)
    else:
        raise CommandFailed(f"invalid format: {fmt}")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
