"""Every client mistake is INVALID_ARGUMENT naming the offending field, through real stubs.

Covers the rules of porter_bundle.validation and the request checks of the installation,
set and paging code. Codes are asserted exactly: no client mistake may come back as
UNKNOWN or INTERNAL.
"""

from __future__ import annotations

import base64
import json

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.struct_pb2 import Struct

from porter.bundle.v1 import porter_bundle_pb2 as pb
from porter.bundle.v1.installation_pb2 import BundleReference, Installation
from porter.bundle.v1.run_pb2 import ACTION_INSTALL, RUN_STATE_SUCCEEDED
from porter.bundle.v1.value_set_pb2 import (
    CredentialSet,
    NamedValueSource,
    ParameterSet,
    ValueSource,
)
from porter_bundle.service.runs import NewRun
from tests.helpers import failure

INVALID = grpc.StatusCode.INVALID_ARGUMENT
GOOD_DIGEST = "sha256:" + "0123456789abcdef" * 4

# --- builders ------------------------------------------------------------------------


def installation(**kw: object) -> Installation:
    kw.setdefault("namespace", "dev")
    kw.setdefault("name", "mybuns")
    kw.setdefault("bundle", BundleReference(repository="localhost:5000/mybuns", version="0.1.2"))
    return Installation(**kw)  # type: ignore[arg-type]


def create_failure(stub, **kw: object):
    return failure(
        stub.CreateInstallation, pb.CreateInstallationRequest(installation=installation(**kw))
    )


def assert_invalid(err, *fields: str) -> None:
    """INVALID_ARGUMENT whose BadRequest names exactly these fields."""
    assert err.code == INVALID, (err.code, err.message)
    assert err.domain == "porter-bundle"
    assert sorted(err.violations) == sorted(fields), err.violations
    for f in fields:
        assert err.violations[f]  # each violation says what is wrong
        assert f in err.message  # and the message summarises it


def big_struct(size: int) -> Struct:
    s = Struct()
    s.update({"blob": "x" * size})
    return s


def encode_token(body: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(body).encode()).decode().rstrip("=")


def decode_token(token: str) -> dict[str, object]:
    decoded: dict[str, object] = json.loads(
        base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    )
    return decoded


# --- names and namespaces ------------------------------------------------------------

BAD_NAMES = [
    "-mybuns",
    "mybuns-",
    ".x",
    "my buns",
    "my/buns",
    "my:buns",
    "mÿbuns",
    "a" * 254,
    "x\n",
]
GOOD_NAMES = ["a", "A", "9", "My.Buns_1-x", "a" * 253]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_installation_name(stub, name):
    assert_invalid(create_failure(stub, name=name), "installation.name")


def test_missing_installation_name(stub):
    err = create_failure(stub, name="")
    assert_invalid(err, "installation.name")
    assert "required" in err.violations["installation.name"]


@pytest.mark.parametrize("name", GOOD_NAMES)
def test_good_installation_name(stub, name):
    req = pb.CreateInstallationRequest(installation=installation(name=name))
    assert stub.CreateInstallation(req).installation.name == name


@pytest.mark.parametrize("namespace", ["-dev", "dev-", "d e v", "dev/x", "a" * 64])
def test_bad_namespace(stub, namespace):
    assert_invalid(create_failure(stub, namespace=namespace), "installation.namespace")


@pytest.mark.parametrize("namespace", ["", "a" * 63, "Dev.Team_1"])
def test_good_namespace(stub, namespace):
    req = pb.CreateInstallationRequest(installation=installation(namespace=namespace))
    assert stub.CreateInstallation(req).installation.namespace == namespace


@pytest.mark.parametrize(
    ("call", "request_"),
    [
        ("GetInstallation", pb.GetInstallationRequest(namespace="dev", name="a b")),
        ("DeleteInstallation", pb.DeleteInstallationRequest(namespace="dev", name="")),
        ("ListInstallationRuns", pb.ListInstallationRunsRequest(namespace="dev", name="-x")),
        ("GetCredentialSet", pb.GetCredentialSetRequest(name="x/y")),
        ("DeleteCredentialSet", pb.DeleteCredentialSetRequest(name="x y")),
        ("GetParameterSet", pb.GetParameterSetRequest(name="a" * 254)),
        ("DeleteParameterSet", pb.DeleteParameterSetRequest(name="")),
    ],
)
def test_bad_name_in_address(stub, call, request_):
    assert_invalid(failure(getattr(stub, call), request_), "name")


@pytest.mark.parametrize(
    ("call", "request_"),
    [
        ("GetInstallation", pb.GetInstallationRequest(namespace="d v", name="x")),
        ("DeleteInstallation", pb.DeleteInstallationRequest(namespace="a" * 64, name="x")),
        ("GetCredentialSet", pb.GetCredentialSetRequest(namespace="-", name="x")),
        ("GetParameterSet", pb.GetParameterSetRequest(namespace="x/", name="x")),
    ],
)
def test_bad_namespace_in_address(stub, call, request_):
    assert_invalid(failure(getattr(stub, call), request_), "namespace")


def test_bad_address_in_update(stub):
    err = failure(
        stub.UpdateInstallation,
        pb.UpdateInstallationRequest(installation=installation(namespace="-", name="a b")),
    )
    assert_invalid(err, "installation.namespace", "installation.name")


@pytest.mark.parametrize(
    ("call", "request_", "field"),
    [
        ("CreateInstallation", pb.CreateInstallationRequest(), "installation"),
        ("UpdateInstallation", pb.UpdateInstallationRequest(), "installation"),
        ("CreateCredentialSet", pb.CreateCredentialSetRequest(), "credential_set"),
        ("UpdateCredentialSet", pb.UpdateCredentialSetRequest(), "credential_set"),
        ("CreateParameterSet", pb.CreateParameterSetRequest(), "parameter_set"),
        ("UpdateParameterSet", pb.UpdateParameterSetRequest(), "parameter_set"),
    ],
)
def test_missing_resource_message(stub, call, request_, field):
    assert_invalid(failure(getattr(stub, call), request_), field)


# --- bundle references ---------------------------------------------------------------


def test_missing_bundle(stub):
    err = failure(
        stub.CreateInstallation,
        pb.CreateInstallationRequest(installation=Installation(namespace="dev", name="x")),
    )
    assert_invalid(err, "installation.bundle")


@pytest.mark.parametrize(
    "ref",
    [BundleReference(repository="localhost:5000/mybuns"), BundleReference()],
    ids=["repository-only", "empty"],
)
def test_bundle_without_digest_version_or_tag(stub, ref):
    err = create_failure(stub, bundle=ref)
    fields = ["installation.bundle"] + (
        [] if ref.repository else ["installation.bundle.repository"]
    )
    assert_invalid(err, *fields)


@pytest.mark.parametrize(
    "digest",
    [
        "sha256:abc",
        "sha256:" + "A" * 64,
        "sha256:" + "g" * 64,
        "sha256:" + "a" * 65,
        "md5:" + "a" * 32,
        "a" * 64,
        "sha512:" + "a" * 64,
    ],
)
def test_bad_digest(stub, digest):
    ref = BundleReference(repository="localhost:5000/mybuns", digest=digest)
    assert_invalid(create_failure(stub, bundle=ref), "installation.bundle.digest")


@pytest.mark.parametrize(
    "version", ["1.x", "1.2.x", "01.2.3", "1.2.3.4", "latest", "V1.2.3", "1.2.3-", "vv1.2.3"]
)
def test_bad_version(stub, version):
    ref = BundleReference(repository="localhost:5000/mybuns", version=version)
    assert_invalid(create_failure(stub, bundle=ref), "installation.bundle.version")


@pytest.mark.parametrize("tag", [".v1", "-v1", "a" * 129, "v1:x", "v 1", "v1/x"])
def test_bad_tag(stub, tag):
    ref = BundleReference(repository="localhost:5000/mybuns", tag=tag)
    assert_invalid(create_failure(stub, bundle=ref), "installation.bundle.tag")


@pytest.mark.parametrize(
    "repository",
    [
        "https://ghcr.io/getporter/hello",
        "ghcr.io/GetPorter/hello",
        "ghcr.io//hello",
        "ghcr.io/hello/",
        "hello:v1",
        "localhost:5000",
        "ghcr.io/hello@sha256",
        "a/" * 128 + "b",
    ],
)
def test_bad_repository(stub, repository):
    ref = BundleReference(repository=repository, tag="v1")
    assert_invalid(create_failure(stub, bundle=ref), "installation.bundle.repository")


@pytest.mark.parametrize(
    "ref",
    [
        BundleReference(repository="ghcr.io/getporter/examples/porter-hello", version="v0.2.0"),
        BundleReference(repository="localhost:5000/mybuns", version="1.2.3-rc.1+build.5"),
        # Porter's semver is lenient: "0.3" is 0.3.0, "1" is 1.0.0.
        BundleReference(repository="localhost:5000/mybuns", version="0.3"),
        BundleReference(repository="localhost:5000/mybuns", version="1"),
        BundleReference(repository="porter-hello", tag="latest"),
        BundleReference(repository="example.com:443/team/app_x__y", tag="_a" + "b" * 126),
        BundleReference(repository="docker.io/library/x", digest=GOOD_DIGEST),
        BundleReference(repository="r/x", digest=GOOD_DIGEST, version="1.0.0", tag="t"),
    ],
)
def test_good_bundle_references(stub, ref):
    req = pb.CreateInstallationRequest(installation=installation(bundle=ref))
    assert stub.CreateInstallation(req).installation.bundle == ref


def test_every_bad_bundle_field_is_reported_at_once(stub):
    ref = BundleReference(repository="Bad Repo", digest="sha256:x", version="1.x", tag=".t")
    err = create_failure(stub, bundle=ref)
    assert_invalid(
        err,
        "installation.bundle.repository",
        "installation.bundle.digest",
        "installation.bundle.version",
        "installation.bundle.tag",
    )


# --- parameters, custom, schema version ----------------------------------------------


def test_parameters_struct_size_limit(stub):
    assert_invalid(create_failure(stub, parameters=big_struct(70_000)), "installation.parameters")
    ok = stub.CreateInstallation(
        pb.CreateInstallationRequest(installation=installation(parameters=big_struct(60_000)))
    )
    assert len(ok.installation.parameters["blob"]) == 60_000


def test_custom_struct_size_limit(stub):
    assert_invalid(create_failure(stub, custom=big_struct(70_000)), "installation.custom")


def test_parameter_names_must_be_non_empty_and_bounded(stub):
    params = Struct()
    params.update({"": 1, "k" * 254: 2, "ok": 3})
    err = create_failure(stub, parameters=params)
    assert_invalid(err, "installation.parameters['']", f"installation.parameters[{'k' * 254!r}]")


@pytest.mark.parametrize("version", ["1.0", "v1.0.2", "latest", "1.0.2-beta"])
def test_bad_schema_version(stub, version):
    assert_invalid(create_failure(stub, schema_version=version), "installation.schema_version")


# --- labels ---------------------------------------------------------------------------

BAD_LABEL_KEYS = [
    "",
    "a b",
    "-app",
    "app-",
    "a" * 64,
    "/app",
    "app/",
    "Example.com/app",
    "example..com/app",
    "a/b/c",
    "ex_ample.com/app",
    "app=x",
]
GOOD_LABEL_KEYS = ["app", "A.b_c-1", "a" * 63, "example.com/app", "getporter.org/generator"]


@pytest.mark.parametrize("key", BAD_LABEL_KEYS)
def test_bad_label_key_on_create(stub, key):
    err = create_failure(stub, labels={key: "v", "ok": "v"})
    assert_invalid(err, f"installation.labels[{key!r}]")


@pytest.mark.parametrize("key", GOOD_LABEL_KEYS)
def test_good_label_key(stub, key):
    req = pb.CreateInstallationRequest(installation=installation(labels={key: "v" * 256}))
    assert dict(stub.CreateInstallation(req).installation.labels) == {key: "v" * 256}


def test_label_value_length(stub):
    assert_invalid(create_failure(stub, labels={"app": "v" * 257}), "installation.labels['app']")


def test_too_many_labels(stub):
    labels = {f"k{i}": "v" for i in range(65)}
    assert_invalid(create_failure(stub, labels=labels), "installation.labels")
    ok = stub.CreateInstallation(
        pb.CreateInstallationRequest(
            installation=installation(labels=dict(list(labels.items())[:64]))
        )
    )
    assert len(ok.installation.labels) == 64


@pytest.mark.parametrize("key", BAD_LABEL_KEYS)
@pytest.mark.parametrize("call", ["ListInstallations", "ListCredentialSets", "ListParameterSets"])
def test_bad_label_key_in_list_filter(stub, call, key):
    request_cls = getattr(pb, f"{call}Request")
    err = failure(getattr(stub, call), request_cls(labels={key: "v"}))
    assert_invalid(err, f"labels[{key!r}]")


@pytest.mark.parametrize(
    "kind", [("CreateCredentialSet", "credential_set"), ("CreateParameterSet", "parameter_set")]
)
def test_bad_label_key_on_sets(stub, kind):
    call, field = kind
    message = CredentialSet if field == "credential_set" else ParameterSet
    err = failure(
        getattr(stub, call),
        getattr(pb, f"{call}Request")(**{field: message(name="s", labels={"a b": "v"})}),
    )
    assert_invalid(err, f"{field}.labels['a b']")


# --- set references -------------------------------------------------------------------


def test_duplicate_set_names(stub):
    err = create_failure(stub, credential_sets=["a", "b", "a"], parameter_sets=["x", "x"])
    assert_invalid(err, "installation.credential_sets[2]", "installation.parameter_sets[1]")
    assert "twice" in err.violations["installation.credential_sets[2]"]


def test_bad_set_names(stub):
    err = create_failure(stub, credential_sets=["ok", "not ok"], parameter_sets=[""])
    assert_invalid(err, "installation.credential_sets[1]", "installation.parameter_sets[0]")


def test_too_many_set_references(stub):
    err = create_failure(stub, parameter_sets=[f"s{i}" for i in range(65)])
    assert_invalid(err, "installation.parameter_sets")


def test_all_violations_of_a_request_are_reported_together(stub):
    err = create_failure(
        stub,
        namespace="-",
        name="",
        labels={"a b": "v"},
        schema_version="x",
        bundle=BundleReference(repository="localhost:5000/x"),
        credential_sets=["a", "a"],
    )
    assert_invalid(
        err,
        "installation.namespace",
        "installation.name",
        "installation.labels['a b']",
        "installation.schema_version",
        "installation.bundle",
        "installation.credential_sets[1]",
    )


# --- list filters and paging ------------------------------------------------------------

LISTS = ["ListInstallations", "ListCredentialSets", "ListParameterSets", "ListBundles"]


def list_call(stub, call: str, **kw: object):
    return getattr(stub, call)(getattr(pb, f"{call}Request")(**kw))


def list_failure(stub, call: str, **kw: object):
    return failure(getattr(stub, call), getattr(pb, f"{call}Request")(**kw))


@pytest.fixture
def rows(stub):
    """Three rows of every listable kind, in namespace "dev" (bundles are global)."""
    bundle_json = json.dumps(
        {
            "schemaVersion": "v1.0.0",
            "name": "b",
            "version": "0.1.0",
            "invocationImages": [{"image": "x"}],
        }
    )
    for i in range(3):
        stub.CreateInstallation(
            pb.CreateInstallationRequest(installation=installation(name=f"r{i}"))
        )
        entries = [NamedValueSource(name="e", source=ValueSource(env="E"))]
        stub.CreateCredentialSet(
            pb.CreateCredentialSetRequest(
                credential_set=CredentialSet(namespace="dev", name=f"r{i}", credentials=entries)
            )
        )
        stub.CreateParameterSet(
            pb.CreateParameterSetRequest(
                parameter_set=ParameterSet(namespace="dev", name=f"r{i}", parameters=entries)
            )
        )
        stub.CreateBundle(
            pb.CreateBundleRequest(reference=f"example.com/r{i}:v1", bundle_json=bundle_json)
        )


def first_page_token(stub, call: str) -> str:
    filters = {} if call == "ListBundles" else {"namespace": "dev"}
    token: str = list_call(stub, call, page_size=1, **filters).next_page_token
    assert token
    return token


@pytest.mark.parametrize("call", LISTS)
def test_negative_page_size_and_skip(stub, call):
    err = list_failure(stub, call, page_size=-1, skip=-5)
    assert_invalid(err, "page_size", "skip")
    assert err.reason == "INVALID_ARGUMENT"


@pytest.mark.parametrize("call", LISTS)
def test_skip_is_bounded(stub, call):
    from porter_bundle.service.paging import MAX_SKIP

    assert_invalid(list_failure(stub, call, skip=MAX_SKIP + 1), "skip")
    assert list(list_call(stub, call, skip=MAX_SKIP).ListFields()) == []


@pytest.mark.parametrize("call", ["ListInstallations", "ListCredentialSets", "ListParameterSets"])
def test_bad_namespace_filter_unless_all_namespaces(stub, call):
    assert_invalid(list_failure(stub, call, namespace="a b"), "namespace")
    assert list_call(stub, call, namespace="a b", all_namespaces=True).total_size == 0


@pytest.mark.parametrize("call", LISTS)
def test_overlong_name_filter(stub, call):
    err = list_failure(stub, call, name="n" * 600)
    assert_invalid(err, "name")


GARBAGE_TOKENS = [
    "garbage",
    "!!!not-base64!!!",
    "x" * 3000,
    encode_token([1, 2, 3]),
    base64.urlsafe_b64encode(b"\xff\xfe not json").decode(),
    encode_token({"v": 2, "f": "0" * 16, "a": ["dev", "r0"]}),
    encode_token({"v": 1, "f": "0" * 16}),
    encode_token({"v": 1, "f": 5, "a": ["dev", "r0"]}),
    encode_token({"v": 1, "f": "0" * 16, "a": "dev"}),
    encode_token({"v": 1, "f": "0" * 16, "a": ["dev", 1]}),
    encode_token({"v": 1, "f": "0" * 16, "a": ["dev", "r0"], "t": -1}),
    encode_token({"v": 1, "f": "0" * 16, "a": ["dev", "r0"], "t": "3"}),
]


@pytest.mark.parametrize("token", GARBAGE_TOKENS)
@pytest.mark.parametrize("call", LISTS)
def test_garbage_page_token(stub, call, token):
    err = list_failure(stub, call, page_token=token)
    assert_invalid(err, "page_token")
    assert err.reason == "INVALID_PAGE_REQUEST"


@pytest.mark.parametrize("call", LISTS)
def test_tampered_page_token(stub, rows, call):
    body = decode_token(first_page_token(stub, call))
    filters = {} if call == "ListBundles" else {"namespace": "dev"}

    for tampered in (
        {**body, "f": "0" * 16},  # the filters it claims
        {**body, "a": [*body["a"], "extra"]},  # a cursor of the wrong shape
        {**body, "v": 0},
    ):
        err = list_failure(stub, call, page_token=encode_token(tampered), **filters)
        assert_invalid(err, "page_token")
        assert err.reason == "INVALID_PAGE_REQUEST"

    # A flipped character in the opaque text.
    token = first_page_token(stub, call)
    flipped = token[:5] + ("A" if token[5] != "A" else "B") + token[6:]
    err = list_failure(stub, call, page_token=flipped, **filters)
    assert_invalid(err, "page_token")


@pytest.mark.parametrize("total", [2**80, 2**63, True])
def test_page_token_with_an_impossible_total_is_invalid_argument(stub, rows, total):
    # A total beyond int64 once made the response undecodable: the client saw INTERNAL.
    token = list_call(
        stub, "ListInstallations", namespace="dev", name="r", page_size=1
    ).next_page_token
    forged = encode_token({**decode_token(token), "t": total})
    err = list_failure(stub, "ListInstallations", namespace="dev", name="r", page_token=forged)
    assert_invalid(err, "page_token")
    assert err.reason == "INVALID_PAGE_REQUEST"


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ({"namespace": "dev"}, {"namespace": "prod"}),
        ({"namespace": "dev"}, {"namespace": ""}),
        ({"namespace": "dev"}, {"all_namespaces": True}),
        ({"namespace": "dev"}, {"namespace": "dev", "name": "r"}),
        ({"namespace": "dev"}, {"namespace": "dev", "labels": {"a": "b"}}),
        ({"namespace": "dev", "labels": {"a": "b"}}, {"namespace": "dev", "labels": {"a": "c"}}),
        ({"all_namespaces": True}, {"all_namespaces": True, "name": "x"}),
    ],
)
@pytest.mark.parametrize("call", ["ListInstallations", "ListCredentialSets", "ListParameterSets"])
def test_page_token_reused_with_different_filters(stub, call, first, second):
    for i in range(2):
        stub.CreateInstallation(
            pb.CreateInstallationRequest(installation=installation(name=f"r{i}", labels={"a": "b"}))
        )
        entries = [NamedValueSource(name="e", source=ValueSource(env="E"))]
        stub.CreateCredentialSet(
            pb.CreateCredentialSetRequest(
                credential_set=CredentialSet(
                    namespace="dev", name=f"r{i}", labels={"a": "b"}, credentials=entries
                )
            )
        )
        stub.CreateParameterSet(
            pb.CreateParameterSetRequest(
                parameter_set=ParameterSet(
                    namespace="dev", name=f"r{i}", labels={"a": "b"}, parameters=entries
                )
            )
        )
    token = list_call(stub, call, page_size=1, **first).next_page_token
    assert token

    err = list_failure(stub, call, page_size=1, page_token=token, **second)

    assert_invalid(err, "page_token")
    assert err.reason == "INVALID_PAGE_REQUEST"
    assert "different filters" in err.violations["page_token"]
    # The same filters still work with it.
    assert list_call(stub, call, page_size=1, page_token=token, **first).total_size == 2


def test_page_token_of_another_list_is_refused(stub, rows):
    for source, target in [
        ("ListCredentialSets", "ListParameterSets"),
        ("ListParameterSets", "ListInstallations"),
        ("ListInstallations", "ListCredentialSets"),
        ("ListBundles", "ListInstallations"),
        ("ListInstallations", "ListBundles"),
    ]:
        token = first_page_token(stub, source)
        filters = {} if target == "ListBundles" else {"namespace": "dev"}
        err = list_failure(stub, target, page_token=token, **filters)
        assert_invalid(err, "page_token")


def test_bundle_page_token_is_bound_to_the_name_filter(stub, rows):
    token = list_call(stub, "ListBundles", page_size=1).next_page_token
    err = list_failure(stub, "ListBundles", page_size=1, page_token=token, name="r")
    assert_invalid(err, "page_token")


def test_page_token_of_runs_is_bound_to_the_installation(stub, rows, server):
    runs = server.services.runs
    for _ in range(2):
        run, _ = runs.create("dev", "r0", NewRun(action=ACTION_INSTALL))
        runs.start(run.id)
        runs.finish(run.id, RUN_STATE_SUCCEEDED)
    token = stub.ListInstallationRuns(
        pb.ListInstallationRunsRequest(namespace="dev", name="r0", page_size=1)
    ).next_page_token
    err = failure(
        stub.ListInstallationRuns,
        pb.ListInstallationRunsRequest(namespace="dev", name="r1", page_token=token),
    )
    assert_invalid(err, "page_token")


def test_update_mask_on_sets_is_checked(stub):
    entries = [NamedValueSource(name="e", source=ValueSource(env="E"))]
    stub.CreateCredentialSet(
        pb.CreateCredentialSetRequest(credential_set=CredentialSet(name="c", credentials=entries))
    )
    err = failure(
        stub.UpdateCredentialSet,
        pb.UpdateCredentialSetRequest(
            credential_set=CredentialSet(name="c"), update_mask=FieldMask(paths=["parameters"])
        ),
    )
    assert_invalid(err, "update_mask.paths[0]")
