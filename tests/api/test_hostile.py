"""A hostile client's findings (issue 13), each a regression test: requests the server cannot
decode, text and numbers that would break later, and errors too large for grpcio."""

from __future__ import annotations

import base64
import json
from typing import Any

import grpc
import pytest
from google.protobuf import struct_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from porter.bundle.v1 import porter_bundle_pb2 as pb
from porter.bundle.v1.value_set_pb2 import CredentialSet, NamedValueSource, ValueSource
from porter_bundle import errors
from porter_bundle.api.servicers import LEGACY_SERVICE, SERVICE
from porter_bundle.status import MAX_STATUS_BYTES, MAX_VIOLATIONS, to_status
from tests.fuzz import methods
from tests.fuzz_server import BUNDLE, seed
from tests.helpers import RpcFailure, failure

INVALID = grpc.StatusCode.INVALID_ARGUMENT
SURROGATE = "\\ud800"  # as JSON and YAML spell it


@pytest.fixture
def seeded(channel: grpc.Channel) -> grpc.Channel:
    seed(channel)
    return channel


def raw(
    channel: grpc.Channel,
    path: str,
    data: bytes,
    *,
    streaming: bool = False,
    client_streaming: bool = False,
) -> RpcFailure:
    """A call with request bytes as they are (a request stream: as its one request); it
    must fail."""
    if client_streaming:
        return failure(lambda: list(channel.stream_stream(path)(iter([data]), timeout=10)))
    if streaming:
        return failure(lambda: list(channel.unary_stream(path)(data, timeout=10)))
    return failure(channel.unary_unary(path), data, timeout=10)


# --- requests the server cannot decode -----------------------------------------------------


@pytest.mark.parametrize("data", ["1202fffe", "ff", "0a056162"])
def test_undecodable_request_is_invalid_argument(channel, data):
    f = raw(channel, f"/{SERVICE}/GetInstallation", bytes.fromhex(data))
    assert f.code == INVALID and f.reason == "MALFORMED_REQUEST", f
    assert "GetInstallationRequest" in f.message and "class" not in f.message


@pytest.mark.parametrize("method", methods(), ids=lambda m: m.path)  # health too
def test_every_method_of_both_services_refuses_undecodable_bytes(channel, method):
    f = raw(
        channel,
        method.path,
        b"\xff",
        streaming=method.streaming,
        client_streaming=method.client_streaming,
    )
    assert f.code == INVALID and f.reason == "MALFORMED_REQUEST", f


def test_struct_nested_beyond_the_decoder_limit_is_malformed(channel):
    inner = struct_pb2.Value(string_value="deep")
    for _ in range(40):
        outer = struct_pb2.Value()
        outer.struct_value.fields["a"].CopyFrom(inner)
        inner = outer
    request = pb.UpdateInstallationRequest()
    request.installation.namespace, request.installation.name = "fz", "app"
    request.installation.custom.fields["x"].CopyFrom(inner)
    f = raw(channel, f"/{SERVICE}/UpdateInstallation", request.SerializeToString())
    assert f.code == INVALID and f.reason == "MALFORMED_REQUEST", f


@pytest.mark.parametrize(
    ("method", "streaming"), [("Check", False), ("Watch", True), ("List", False)]
)
def test_health_refuses_undecodable_bytes_too(channel, method, streaming):
    f = raw(channel, f"/grpc.health.v1.Health/{method}", b"\xff", streaming=streaming)
    assert f.code == INVALID and f.reason == "MALFORMED_REQUEST", f


def test_health_list_answers_every_service(channel):
    listed = health_pb2_grpc.HealthStub(channel).List(health_pb2.HealthListRequest(), timeout=10)
    assert {"", SERVICE, LEGACY_SERVICE} <= set(listed.statuses)
    # The server overall serves; PorterBundle's status follows its container engine (none here).
    assert listed.statuses[""].status == health_pb2.HealthCheckResponse.SERVING


# --- text that is not Unicode --------------------------------------------------------------


def document(text: str) -> bytes:
    return text.encode()


def test_lone_surrogates_in_documents_are_refused(stub):
    cases = [
        (
            stub.ApplyParameterSet,
            pb.ApplyParameterSetRequest,
            "schemaType: ParameterSet\nschemaVersion: 1.1.0\nnamespace: fz\nname: p\n"
            f'labels: {{a: "{SURROGATE}"}}\nparameters: []\n',
        ),
        (
            stub.ApplyInstallation,
            pb.ApplyInstallationRequest,
            f'schemaType: Installation\nschemaVersion: 1.0.2\nnamespace: "{SURROGATE}"\n'
            "name: app\nbundle: {repository: localhost/fz, version: 1.0.0}\n",
        ),
        (
            stub.ApplyCredentialSet,
            pb.ApplyCredentialSetRequest,
            f'{{"schemaType": "{SURROGATE}", "schemaVersion": "1.0.1", "name": "c"}}',
        ),
    ]
    for call, request, text in cases:
        kwargs = {"dry_run": True} if request is pb.ApplyInstallationRequest else {}
        f = failure(call, request(document=document(text), **kwargs))
        assert f.code == INVALID and "Unicode" in str(f.violations), (request, f)


def test_lone_surrogate_in_bundle_json_is_refused(stub):
    text = json.dumps(BUNDLE).replace('"version"', f'"description": "{SURROGATE}", "version"')
    f = failure(
        stub.CreateBundle, pb.CreateBundleRequest(reference="localhost/x:v1", bundle_json=text)
    )
    assert f.code == INVALID and f.reason == "INVALID_BUNDLE"
    assert "bundle_json.description" in f.violations


LISTS = [
    ("ListInstallations", pb.ListInstallationsRequest()),
    ("ListInstallationRuns", pb.ListInstallationRunsRequest(namespace="fz", name="app")),
    ("ListCredentialSets", pb.ListCredentialSetsRequest()),
    ("ListParameterSets", pb.ListParameterSetsRequest()),
    ("ListBundles", pb.ListBundlesRequest()),
]


@pytest.mark.parametrize(("method", "request_"), LISTS, ids=[m for m, _ in LISTS])
def test_a_tampered_page_token_is_invalid_argument(seeded, stub, method, request_):
    for after in ("\ud800", "x"):
        body = {"v": 1, "f": "0" * 16, "a": [after] * 2}
        request_.page_token = base64.urlsafe_b64encode(json.dumps(body).encode()).decode()
        f = failure(getattr(stub, method), request_)
        assert f.code == INVALID and "page_token" in f.violations, (method, f)


# --- numbers that are not finite -------------------------------------------------------------


@pytest.mark.parametrize("number", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_numbers_are_refused_at_write_time(seeded, stub, number):
    update = pb.UpdateInstallationRequest(update_mask={"paths": ["custom"]})
    update.installation.namespace, update.installation.name = "fz", "app"
    update.installation.custom.update({"x": number})
    params = pb.CreateParameterSetRequest()
    params.parameter_set.namespace, params.parameter_set.name = "fz", "nan"
    params.parameter_set.parameters.add(name="log_level").source.value.number_value = number
    execute = pb.ExecuteActionRequest(namespace="fz", name="app", action="install")
    execute.parameters.update({"log_level": {"deep": [1, number]}})
    for call, request, path in (
        (stub.UpdateInstallation, update, "installation.custom.x"),
        (stub.CreateParameterSet, params, "parameter_set.parameters[0].source.value"),
        (stub.ExecuteAction, execute, "parameters.log_level.deep[1]"),
    ):
        f = failure(call, request)
        assert f.code == INVALID and f.reason == "NON_FINITE_NUMBER", f
        assert path in f.violations, f.violations
    got = stub.GetInstallation(pb.GetInstallationRequest(namespace="fz", name="app"))
    assert dict(got.installation.custom) == {"team": "fz"}  # nothing was written


# --- bundle definitions that are not JSON Schema -----------------------------------------


@pytest.mark.parametrize(
    "definition", [{"type": "string", "pattern": "(["}, {"$ref": "#/nope"}, {"type": "strin"}]
)
def test_bundle_definitions_must_be_json_schema(stub, definition):
    bundle = dict(BUNDLE, definitions={**BUNDLE["definitions"], "text": definition})
    f = failure(
        stub.CreateBundle,
        pb.CreateBundleRequest(reference="localhost/bad:v1", bundle_json=json.dumps(bundle)),
    )
    assert f.code == INVALID and f.reason == "INVALID_BUNDLE"
    assert [field.startswith("bundle_json.definitions.text") for field in f.violations] == [True]


def test_a_stored_bad_definition_never_escapes_at_run_time():
    bundle = dict(BUNDLE, definitions={**BUNDLE["definitions"], "text": {"pattern": "(["}})
    with pytest.raises(errors.InvalidArgument) as err:
        resolve(bundle, [], overrides={"p": "abc", "log_level": 1})
    fields = {v.field: v.description for v in err.value.violations}
    assert "JSON Schema" in fields["parameters.p"]


# --- credentials: every problem at once -----------------------------------------------------


def resolve(
    bundle: dict[str, Any], entries: list[NamedValueSource], overrides: dict[str, Any] | None = None
) -> object:
    """The service's input resolution for install, credentials from one set of ``entries``,
    on a server whose environment is empty."""
    from porter_bundle.service.inputs import resolve_inputs
    from porter_bundle.service.sources import SourceResolver

    return resolve_inputs(
        bundle,
        "install",
        parameter_sets=[],
        credential_sets=["creds"] if entries else [],
        installation_parameters={},
        overrides=overrides or {"log_level": 1},
        find_parameter_set=lambda name: None,
        find_credential_set=lambda name: entries,
        resolver=SourceResolver(secrets=None, environ={}),  # type: ignore[arg-type]
    )


def test_credential_problems_are_reported_together():
    bundle = dict(
        BUNDLE,
        credentials={
            "c": {"env": "C", "required": True},
            "d": {"env": "D", "required": True},
            "e": {"env": "E", "required": True},
        },
    )
    entries = [
        NamedValueSource(name="c", source=ValueSource(env="FZ_UNSET_1")),
        NamedValueSource(name="d", source=ValueSource(env="FZ_UNSET_2")),
    ]
    with pytest.raises(errors.InvalidArgument) as err:
        resolve(bundle, entries)
    fields = {v.field: v.description for v in err.value.violations}
    assert {"credentials.c", "credentials.d", "credentials.e"} <= set(fields)
    assert "FZ_UNSET_1" in fields["credentials.c"] and "FZ_UNSET_2" in fields["credentials.d"]


def test_execute_action_reports_every_credential_problem_at_once(seeded, stub):
    """An unresolved env source no longer hides a missing required credential."""
    bundle = dict(
        BUNDLE,
        credentials={"c": {"env": "C", "required": True}, "d": {"env": "D", "required": True}},
    )
    stub.CreateBundle(
        pb.CreateBundleRequest(reference="localhost/fz2:v1.0.0", bundle_json=json.dumps(bundle))
    )
    inst = stub.GetInstallation(pb.GetInstallationRequest(namespace="fz", name="app")).installation
    inst.name, inst.bundle.repository = "app2", "localhost/fz2"
    stub.CreateInstallation(pb.CreateInstallationRequest(installation=inst))
    f = failure(
        stub.ExecuteAction, pb.ExecuteActionRequest(namespace="fz", name="app2", action="install")
    )
    assert f.code == INVALID and f.reason == "INVALID_INPUTS"
    assert "FZ_UNSET_X" in f.violations["credentials.c"]  # the seeded set's unset variable
    assert "none of the credential sets" in f.violations["credentials.d"]


def test_unresolved_sources_alone_are_one_failed_precondition():
    bundle = dict(BUNDLE, credentials={"c": {"env": "C"}, "d": {"env": "D"}})
    entries = [
        NamedValueSource(name=n, source=ValueSource(env=f"FZ_UNSET_{n}")) for n in ("c", "d")
    ]
    with pytest.raises(errors.FailedPrecondition) as err:
        resolve(bundle, entries)
    assert err.value.reason == "SOURCE_UNRESOLVED"
    assert "FZ_UNSET_c" in err.value.message and "FZ_UNSET_d" in err.value.message


# --- NUL bytes -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["path", "command"])
def test_nul_in_a_source_is_refused_at_write_time(stub, kind):
    source = ValueSource(**{kind: "/tmp/a\x00b"})
    cs = CredentialSet(
        namespace="fz", name="nul", credentials=[NamedValueSource(name="c", source=source)]
    )
    f = failure(stub.CreateCredentialSet, pb.CreateCredentialSetRequest(credential_set=cs))
    assert f.code == INVALID
    assert "NUL" in f.violations[f"credential_set.credentials[0].source.{kind}"]
    params = pb.CreateParameterSetRequest()
    params.parameter_set.namespace, params.parameter_set.name = "fz", "nul"
    params.parameter_set.parameters.add(name="p", source=source)
    f = failure(stub.CreateParameterSet, params)
    assert f.code == INVALID and f"parameter_set.parameters[0].source.{kind}" in f.violations


# --- errors stay small -------------------------------------------------------------------------


def test_huge_inputs_give_the_real_status_not_resource_exhausted(seeded, stub):
    f = failure(
        stub.DeleteInstallation,
        pb.DeleteInstallationRequest(namespace="fz", name="app", etag="e" * 20_000),
    )
    assert f.code == grpc.StatusCode.ABORTED and f.reason == "ETAG_MISMATCH"
    assert len(f.message) < 1000
    create = pb.CreateInstallationRequest()
    create.installation.CopyFrom(
        stub.GetInstallation(pb.GetInstallationRequest(namespace="fz", name="app")).installation
    )
    create.installation.name = "other"
    create.installation.labels["k" * 20_000] = "v"
    f = failure(stub.CreateInstallation, create)
    assert f.code == INVALID and len(f.message) < 1000
    execute = pb.ExecuteActionRequest(namespace="fz", name="app", action="install")
    execute.parameters.update({f"unknown{i}": i for i in range(1000)})
    f = failure(stub.ExecuteAction, execute)
    assert f.code == INVALID
    assert len(f.violations) <= MAX_VIOLATIONS + 1
    assert f.violations[""].startswith("and ") and f.violations[""].endswith("more violations")
    assert "more" in f.message


def test_the_error_mapper_never_fails_on_odd_text():
    odd = "\ud800" + "x" * 50_000
    exc = errors.InvalidArgument(
        odd,
        [errors.FieldViolation(odd, odd) for _ in range(500)],
        metadata={odd: odd} | {str(i): odd for i in range(100)},
        reason="ODD",
    )
    for error in (exc, errors.NotFound(odd, metadata={"name": odd}), errors.Aborted("\udfff")):
        code, status = to_status(error)
        assert code != grpc.StatusCode.INTERNAL
        assert status.ByteSize() <= MAX_STATUS_BYTES + 200
        status.SerializeToString()  # valid UTF-8 throughout
    assert "\\ud800" in to_status(exc)[1].message
