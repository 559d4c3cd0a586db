"""Credential sets and parameter sets through real stubs.

Both kinds share one implementation, so most tests run for each through a small
adapter (:class:`Kind`) that names its RPCs, message and entries field.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.json_format import MessageToDict, ParseDict
from google.protobuf.struct_pb2 import Value

from porter.bundle.v1 import porter_bundle_pb2 as pb
from porter.bundle.v1.installation_pb2 import BundleReference, Installation
from porter.bundle.v1.value_set_pb2 import (
    CredentialSet,
    NamedValueSource,
    ParameterSet,
    ValueSource,
)
from tests.helpers import failure

# --- builders ------------------------------------------------------------------------


@dataclass(frozen=True)
class Kind:
    """What differs between credential sets and parameter sets, for the tests."""

    title: str  # "CredentialSet"
    field: str  # "credential_set"
    entries: str  # "credentials"
    message: type[Any]
    reason: str  # "CREDENTIAL_SET"
    default_schema_version: str
    installation_field: str  # "credential_sets"

    def call(self, stub, verb: str, **request: Any) -> Any:
        name = f"{verb}{self.title}" + ("s" if verb == "List" else "")
        return getattr(stub, name)(getattr(pb, f"{name}Request")(**request))

    def fail(self, stub, verb: str, **request: Any):
        name = f"{verb}{self.title}" + ("s" if verb == "List" else "")
        return failure(getattr(stub, name), getattr(pb, f"{name}Request")(**request))

    def build(self, name: str = "myset", namespace: str = "dev", entries=None, **kw: Any) -> Any:
        if entries is None:
            entries = [entry("username", env="USER")]
        return self.message(namespace=namespace, name=name, **{self.entries: entries}, **kw)

    def create(self, stub, *args: Any, **kw: Any) -> Any:
        msg = self.build(*args, **kw)
        return getattr(self.call(stub, "Create", **{self.field: msg}), self.field)

    def get(self, stub, name: str = "myset", namespace: str = "dev") -> Any:
        return getattr(self.call(stub, "Get", namespace=namespace, name=name), self.field)

    def update(self, stub, msg: Any, *paths: str) -> Any:
        resp = self.call(
            stub, "Update", **{self.field: msg, "update_mask": FieldMask(paths=list(paths))}
        )
        return getattr(resp, self.field)

    def items(self, resp: Any) -> list[Any]:
        return list(getattr(resp, f"{self.field}s"))

    def entries_of(self, msg: Any) -> list[NamedValueSource]:
        return list(getattr(msg, self.entries))


CREDS = Kind(
    "CredentialSet",
    "credential_set",
    "credentials",
    CredentialSet,
    "CREDENTIAL_SET",
    "1.0.1",
    "credential_sets",
)
PARAMS = Kind(
    "ParameterSet",
    "parameter_set",
    "parameters",
    ParameterSet,
    "PARAMETER_SET",
    "1.1.0",
    "parameter_sets",
)
KINDS = pytest.mark.parametrize("kind", [CREDS, PARAMS], ids=["credentials", "parameters"])


def json_value(value: Any) -> Value:
    v = Value()
    ParseDict(value, v)
    return v


def entry(name: str, **source: Any) -> NamedValueSource:
    """An entry; a plain Python ``value`` becomes the matching JSON Value."""
    if "value" in source and not isinstance(source["value"], Value):
        source["value"] = json_value(source["value"])
    return NamedValueSource(name=name, source=ValueSource(**source))


def installation(stub, name: str = "app", namespace: str = "dev", **kw: Any) -> Installation:
    inst = Installation(
        namespace=namespace,
        name=name,
        bundle=BundleReference(repository="localhost:5000/mybuns", version="0.1.2"),
        **kw,
    )
    return stub.CreateInstallation(pb.CreateInstallationRequest(installation=inst)).installation


def source_kinds(msg: Any, kind: Kind) -> dict[str, tuple[str | None, bool]]:
    return {e.name: (e.source.WhichOneof("kind"), e.source.redacted) for e in kind.entries_of(msg)}


SECRET = "hunter2-literal-9f8e7d"


# --- create and get ------------------------------------------------------------------


@KINDS
def test_create_then_get(stub, kind):
    created = kind.create(stub, labels={"team": "a"})

    assert len(created.id) == 26
    assert (created.namespace, created.name) == ("dev", "myset")
    assert created.schema_version == kind.default_schema_version
    assert dict(created.labels) == {"team": "a"}
    assert kind.entries_of(created) == [entry("username", env="USER")]
    assert created.etag
    assert created.create_time == created.update_time and created.create_time.seconds > 0
    assert kind.get(stub) == created


@KINDS
def test_given_schema_version_is_kept(stub, kind):
    assert kind.create(stub, schema_version="1.0.0").schema_version == "1.0.0"


@KINDS
def test_output_only_fields_in_create_are_ignored(stub, kind):
    given = kind.build(id="01ARZ3NDEKTSV4RRFFQ69G5FAV", etag="mine")
    given.create_time.seconds = 1
    created = getattr(kind.call(stub, "Create", **{kind.field: given}), kind.field)

    assert created.id != "01ARZ3NDEKTSV4RRFFQ69G5FAV"
    assert created.etag != "mine"
    assert created.create_time.seconds > 1


@KINDS
def test_client_sent_redacted_flag_is_ignored(stub, kind):
    given = kind.build(
        entries=[NamedValueSource(name="u", source=ValueSource(env="USER", redacted=True))]
    )
    created = getattr(kind.call(stub, "Create", **{kind.field: given}), kind.field)

    assert source_kinds(created, kind) == {"u": ("env", False)}
    assert source_kinds(kind.get(stub), kind) == {"u": ("env", False)}


@KINDS
def test_every_source_kind_is_accepted(stub, kind):
    entries = [
        entry("from_value", value="abc"),
        entry("from_env", env="MY_ENV_1"),
        entry("from_path", path="/etc/porter/thing"),
        entry("from_command", command="echo hello world"),
        entry("from_secret", secret="kv/thing"),
    ]
    created = kind.create(stub, entries=entries)

    got = {e.name: e.source for e in kind.entries_of(kind.get(stub))}
    assert got["from_env"] == ValueSource(env="MY_ENV_1")
    assert got["from_path"] == ValueSource(path="/etc/porter/thing")
    assert got["from_command"] == ValueSource(command="echo hello world")
    assert got["from_secret"] == ValueSource(secret="kv/thing")
    if kind is CREDS:
        assert got["from_value"] == ValueSource(redacted=True)
    else:
        assert got["from_value"] == ValueSource(value=Value(string_value="abc"))
    assert [e.name for e in kind.entries_of(created)] == [e.name for e in entries]  # order kept


@KINDS
def test_duplicate_create_is_already_exists(stub, kind):
    kind.create(stub)
    err = kind.fail(stub, "Create", **{kind.field: kind.build()})

    assert err.code == grpc.StatusCode.ALREADY_EXISTS
    assert err.reason == f"{kind.reason}_EXISTS"
    assert err.metadata == {"namespace": "dev", "name": "myset"}


@KINDS
def test_same_name_in_other_namespace_and_other_kind_is_fine(stub, kind):
    kind.create(stub)
    kind.create(stub, namespace="")
    other = PARAMS if kind is CREDS else CREDS
    other.create(stub)

    assert kind.get(stub, namespace="").namespace == ""
    assert kind.call(stub, "List", all_namespaces=True).total_size == 2


@KINDS
def test_get_missing_is_not_found(stub, kind):
    (PARAMS if kind is CREDS else CREDS).create(stub)  # a set of the other kind does not count
    err = kind.fail(stub, "Get", namespace="dev", name="myset")

    assert err.code == grpc.StatusCode.NOT_FOUND
    assert err.reason == f"{kind.reason}_NOT_FOUND"
    assert err.metadata == {"namespace": "dev", "name": "myset"}


# --- source rules ---------------------------------------------------------------------


def bad_entries(kind: Kind, entries: list[NamedValueSource]):
    return lambda stub: kind.fail(stub, "Create", **{kind.field: kind.build(entries=entries)})


@KINDS
@pytest.mark.parametrize(
    "source",
    [ValueSource(), ValueSource(redacted=True)],
    ids=["no-source", "only-redacted"],
)
def test_a_source_is_required(stub, kind, source):
    err = bad_entries(kind, [entry("ok", env="E"), NamedValueSource(name="x", source=source)])(stub)

    assert err.code == grpc.StatusCode.INVALID_ARGUMENT
    path = f"{kind.field}.{kind.entries}[1].source"
    assert list(err.violations) == [path]
    assert "exactly one" in err.violations[path]


@KINDS
def test_an_entry_without_source_message_is_refused(stub, kind):
    err = bad_entries(kind, [NamedValueSource(name="x")])(stub)
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT
    assert list(err.violations) == [f"{kind.field}.{kind.entries}[0].source"]


@KINDS
@pytest.mark.parametrize("which", ["env", "path", "command", "secret"])
def test_empty_source_text_is_refused(stub, kind, which):
    err = bad_entries(kind, [entry("x", **{which: ""})])(stub)
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT
    assert list(err.violations) == [f"{kind.field}.{kind.entries}[0].source.{which}"]


@KINDS
@pytest.mark.parametrize("which", ["env", "path", "command", "secret"])
def test_overlong_source_text_is_refused(stub, kind, which):
    err = bad_entries(kind, [entry("x", **{which: "A" * 4097})])(stub)
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT
    assert list(err.violations) == [f"{kind.field}.{kind.entries}[0].source.{which}"]


@KINDS
@pytest.mark.parametrize("env", ["1ABC", "MY-VAR", "MY VAR", "A=B", "$HOME"])
def test_env_name_is_validated(stub, kind, env):
    err = bad_entries(kind, [entry("x", env=env)])(stub)
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT
    assert list(err.violations) == [f"{kind.field}.{kind.entries}[0].source.env"]


@KINDS
@pytest.mark.parametrize("env", ["_", "USER", "my_var_2"])
def test_good_env_names(stub, kind, env):
    created = kind.create(stub, entries=[entry("x", env=env)])
    assert kind.entries_of(created)[0].source.env == env


@KINDS
def test_duplicate_entry_names_are_refused(stub, kind):
    err = bad_entries(kind, [entry("a", env="A"), entry("b", env="B"), entry("a", env="C")])(stub)
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT
    assert list(err.violations) == [f"{kind.field}.{kind.entries}[2].name"]
    assert "twice" in err.violations[f"{kind.field}.{kind.entries}[2].name"]


@KINDS
@pytest.mark.parametrize("name", ["", "a b", "-x", "x" * 254])
def test_bad_entry_names_are_refused(stub, kind, name):
    err = bad_entries(kind, [entry(name, env="A")])(stub)
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT
    assert list(err.violations) == [f"{kind.field}.{kind.entries}[0].name"]


@KINDS
def test_unset_value_is_refused(stub, kind):
    err = bad_entries(kind, [NamedValueSource(name="x", source=ValueSource(value=Value()))])(stub)
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT
    assert list(err.violations) == [f"{kind.field}.{kind.entries}[0].source.value"]


@KINDS
def test_oversized_value_is_refused(stub, kind):
    err = bad_entries(kind, [entry("x", value="v" * 70_000)])(stub)
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT
    assert list(err.violations) == [f"{kind.field}.{kind.entries}[0].source.value"]


@KINDS
def test_too_many_entries_are_refused(stub, kind):
    entries = [entry(f"e{i}", env="E") for i in range(257)]
    err = bad_entries(kind, entries)(stub)
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT
    assert list(err.violations) == [f"{kind.field}.{kind.entries}"]
    assert len(kind.entries_of(kind.create(stub, entries=entries[:256]))) == 256


@KINDS
def test_bad_schema_version_is_refused(stub, kind):
    err = kind.fail(stub, "Create", **{kind.field: kind.build(schema_version="1.0")})
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT
    assert list(err.violations) == [f"{kind.field}.schema_version"]


@KINDS
def test_bad_address_is_refused(stub, kind):
    err = kind.fail(stub, "Create", **{kind.field: kind.build(name="", namespace="a b")})
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT
    assert sorted(err.violations) == [f"{kind.field}.name", f"{kind.field}.namespace"]


@KINDS
def test_a_set_may_be_empty(stub, kind):
    assert kind.entries_of(kind.create(stub, entries=[])) == []


# --- credential literals are write-only -----------------------------------------------


@pytest.mark.parametrize("value", [123, 1.5, True, None, {"a": "b"}, ["x"]])
def test_credential_value_must_be_a_string(stub, value):
    err = CREDS.fail(
        stub, "Create", credential_set=CREDS.build(entries=[entry("token", value=value)])
    )

    assert err.code == grpc.StatusCode.INVALID_ARGUMENT
    assert list(err.violations) == ["credential_set.credentials[0].source.value"]
    assert "string" in err.violations["credential_set.credentials[0].source.value"]


def test_credential_literal_is_never_returned(server, stub):
    entries = [entry("token", value=SECRET), entry("user", env="USER")]
    responses: list[Any] = []

    created = CREDS.create(stub, entries=entries, labels={"a": "1"})
    responses.append(created)
    responses.append(CREDS.get(stub))
    responses.append(stub.ListCredentialSets(pb.ListCredentialSetsRequest(namespace="dev")))
    responses.append(
        stub.ListCredentialSets(pb.ListCredentialSetsRequest(all_namespaces=True, name="my"))
    )
    responses.append(CREDS.update(stub, CREDS.build(labels={"a": "2"}), "labels"))
    responses.append(
        CREDS.update(stub, CREDS.build(entries=[*entries, entry("new", value=SECRET + "2")]))
    )
    responses.append(CREDS.get(stub))

    for resp in responses:
        assert SECRET.encode() not in resp.SerializeToString()
        assert SECRET not in str(MessageToDict(resp))
    for msg in [*responses[:2], responses[4], responses[5], responses[6]]:
        by_name = {e.name: e.source for e in CREDS.entries_of(msg)}
        assert by_name["token"] == ValueSource(redacted=True)
        assert by_name["token"].WhichOneof("kind") is None
        assert by_name["user"] == ValueSource(env="USER")
    assert {e.name: e.source for e in CREDS.entries_of(responses[5])}["new"] == ValueSource(
        redacted=True
    )
    listed = CREDS.items(responses[2])[0]
    assert {e.name: e.source for e in listed.credentials}["token"] == ValueSource(redacted=True)

    # Write-only, not dropped: the server still holds the literal for runs.
    full = server.services.credential_sets.get_full("dev", "myset")
    assert {e.name: e.source.value.string_value for e in full.credentials if e.name != "user"} == {
        "token": SECRET,
        "new": SECRET + "2",
    }


def test_credential_literal_is_not_echoed_in_errors(stub):
    CREDS.create(stub, entries=[entry("token", value=SECRET)])
    errors = [
        CREDS.fail(
            stub, "Create", credential_set=CREDS.build(entries=[entry("token", value=SECRET)])
        ),
        CREDS.fail(
            stub,
            "Create",
            credential_set=CREDS.build(
                name="b", entries=[entry("t", value=SECRET), entry("t", value=SECRET)]
            ),
        ),
        CREDS.fail(
            stub,
            "Create",
            credential_set=CREDS.build(name="c", entries=[entry("t", value=SECRET * 5000)]),
        ),
    ]
    assert [e.code for e in errors] == [
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.INVALID_ARGUMENT,
    ]
    for err in errors:
        assert SECRET not in repr(err)


def test_updating_credentials_without_touching_them_keeps_the_literal(server, stub):
    CREDS.create(stub, entries=[entry("token", value=SECRET)])
    CREDS.update(stub, CREDS.build(entries=[], labels={"x": "y"}), "labels")

    full = server.services.credential_sets.get_full("dev", "myset")
    assert full.credentials[0].source.value.string_value == SECRET


# --- parameter values are returned, typed ----------------------------------------------


def test_parameter_values_are_returned_with_their_json_types(stub):
    values = {
        "string": "abc123",
        "number": 3.1415,
        "integer": 3,
        "boolean": True,
        "null": None,
        "array": [1, "a", 3.1415, [2, "b"], {"c": 3}, False],
        "object": {"items": ["a", "b", "c", 1, 2, 3], "valid": True},
    }
    entries = [entry(k, value=v) for k, v in values.items()]
    created = PARAMS.create(stub, entries=entries)

    for msg in (
        created,
        PARAMS.get(stub),
        PARAMS.items(stub.ListParameterSets(pb.ListParameterSetsRequest(namespace="dev")))[0],
    ):
        got = {e.name: MessageToDict(e.source.value) for e in msg.parameters}
        assert got == values
        assert not any(e.source.redacted for e in msg.parameters)
    kinds = {e.name: e.source.value.WhichOneof("kind") for e in created.parameters}
    assert kinds == {
        "string": "string_value",
        "number": "number_value",
        "integer": "number_value",
        "boolean": "bool_value",
        "null": "null_value",
        "array": "list_value",
        "object": "struct_value",
    }


# --- update ----------------------------------------------------------------------------


@KINDS
@pytest.mark.parametrize("path", ["labels", "entries", "schema_version"])
def test_update_mask_path_changes_only_that_field(stub, kind, path):
    original = kind.create(stub, labels={"a": "1"}, schema_version="1.0.0")
    changed = kind.build(
        entries=[entry("other", secret="s")], labels={"b": "2"}, schema_version="2.0.0"
    )
    field = kind.entries if path == "entries" else path

    updated = kind.update(stub, changed, field)

    def view(msg: Any) -> dict[str, Any]:
        return MessageToDict(msg, preserving_proto_field_name=True)

    for f in ("labels", kind.entries, "schema_version"):
        source = changed if f == field else original
        assert view(updated).get(f) == view(source).get(f), f
    assert updated.id == original.id and updated.create_time == original.create_time
    assert updated.etag != original.etag
    assert kind.get(stub) == updated


@KINDS
def test_update_with_empty_mask_replaces_all_and_defaults_schema_version(stub, kind):
    kind.create(stub, labels={"a": "1"}, schema_version="1.0.0")
    updated = kind.update(stub, kind.build(entries=[entry("n", path="/p")]))

    assert dict(updated.labels) == {}
    assert kind.entries_of(updated) == [entry("n", path="/p")]
    assert updated.schema_version == kind.default_schema_version


@KINDS
def test_update_mask_with_unknown_path_is_refused(stub, kind):
    original = kind.create(stub)
    other_entries = "parameters" if kind is CREDS else "credentials"
    err = kind.fail(
        stub,
        "Update",
        **{
            kind.field: kind.build(labels={"x": "y"}),
            "update_mask": FieldMask(paths=["labels", "name", other_entries]),
        },
    )
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT
    assert sorted(err.violations) == ["update_mask.paths[1]", "update_mask.paths[2]"]
    assert kind.get(stub) == original


@KINDS
def test_update_with_stale_etag_is_aborted_and_current_one_works(stub, kind):
    original = kind.create(stub)
    current = kind.update(stub, kind.build(labels={"v": "1"}, etag=original.etag), "labels")

    err = kind.fail(
        stub, "Update", **{kind.field: kind.build(labels={"v": "2"}, etag=original.etag)}
    )
    assert err.code == grpc.StatusCode.ABORTED
    assert err.reason == "ETAG_MISMATCH"
    assert err.metadata == {"etag": current.etag}
    assert dict(kind.get(stub).labels) == {"v": "1"}


@KINDS
def test_update_missing_is_not_found(stub, kind):
    err = kind.fail(stub, "Update", **{kind.field: kind.build()})
    assert err.code == grpc.StatusCode.NOT_FOUND
    assert err.reason == f"{kind.reason}_NOT_FOUND"


@KINDS
def test_invalid_update_changes_nothing(stub, kind):
    original = kind.create(stub)
    err = kind.fail(stub, "Update", **{kind.field: kind.build(entries=[entry("x")])})
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT
    assert list(err.violations) == [f"{kind.field}.{kind.entries}[0].source"]
    assert kind.get(stub) == original


# --- delete ----------------------------------------------------------------------------


@KINDS
def test_delete_then_not_found(stub, kind):
    kind.create(stub)
    kind.call(stub, "Delete", namespace="dev", name="myset")

    err = kind.fail(stub, "Get", namespace="dev", name="myset")
    assert err.code == grpc.StatusCode.NOT_FOUND
    again = kind.fail(stub, "Delete", namespace="dev", name="myset")
    assert again.code == grpc.StatusCode.NOT_FOUND
    assert again.reason == f"{kind.reason}_NOT_FOUND"
    assert kind.call(stub, "List", namespace="dev").total_size == 0


@KINDS
def test_delete_with_stale_etag_is_aborted(stub, kind):
    original = kind.create(stub)
    current = kind.update(stub, kind.build(labels={"a": "b"}), "labels")

    err = kind.fail(stub, "Delete", namespace="dev", name="myset", etag=original.etag)
    assert err.code == grpc.StatusCode.ABORTED
    assert err.reason == "ETAG_MISMATCH"
    kind.call(stub, "Delete", namespace="dev", name="myset", etag=current.etag)
    assert kind.fail(stub, "Get", namespace="dev", name="myset").code == grpc.StatusCode.NOT_FOUND


def assert_in_use(err, kind: Kind, namespace: str, users: str) -> None:
    assert err.code == grpc.StatusCode.FAILED_PRECONDITION
    assert err.reason == f"{kind.reason}_IN_USE"
    assert err.metadata == {"namespace": namespace, "name": "myset", "installations": users}


@KINDS
def test_delete_refused_while_an_installation_in_the_namespace_uses_it(stub, kind):
    kind.create(stub)
    installation(stub, "app", **{kind.installation_field: ["other", "myset"]})
    installation(stub, "app2", **{kind.installation_field: ["myset"]})

    err = kind.fail(stub, "Delete", namespace="dev", name="myset")

    assert_in_use(err, kind, "dev", "dev/app, dev/app2")
    assert kind.get(stub).name == "myset"


@KINDS
def test_delete_allowed_with_force(stub, kind):
    kind.create(stub)
    installation(stub, **{kind.installation_field: ["myset"]})

    kind.call(stub, "Delete", namespace="dev", name="myset", force=True)

    assert kind.fail(stub, "Get", namespace="dev", name="myset").code == grpc.StatusCode.NOT_FOUND


@KINDS
def test_delete_allowed_once_the_installation_drops_the_set(stub, kind):
    kind.create(stub)
    inst = installation(stub, **{kind.installation_field: ["myset"]})
    inst.ClearField(kind.installation_field)  # type: ignore[arg-type]
    stub.UpdateInstallation(
        pb.UpdateInstallationRequest(
            installation=inst, update_mask=FieldMask(paths=[kind.installation_field])
        )
    )

    kind.call(stub, "Delete", namespace="dev", name="myset")
    assert kind.call(stub, "List", namespace="dev").total_size == 0


@KINDS
def test_delete_allowed_once_the_installation_is_deleted(stub, kind):
    kind.create(stub)
    installation(stub, **{kind.installation_field: ["myset"]})
    stub.DeleteInstallation(pb.DeleteInstallationRequest(namespace="dev", name="app"))

    kind.call(stub, "Delete", namespace="dev", name="myset")


@KINDS
def test_uses_in_other_namespaces_or_of_the_other_kind_do_not_block(stub, kind):
    kind.create(stub)
    other_field = "parameter_sets" if kind is CREDS else "credential_sets"
    installation(stub, "elsewhere", namespace="prod", **{kind.installation_field: ["myset"]})
    installation(stub, "other-kind", **{other_field: ["myset"]})

    kind.call(stub, "Delete", namespace="dev", name="myset")


@KINDS
def test_global_set_used_from_a_namespace_without_its_own_is_in_use(stub, kind):
    kind.create(stub, namespace="")
    installation(stub, "app", namespace="dev", **{kind.installation_field: ["myset"]})

    err = kind.fail(stub, "Delete", namespace="", name="myset")

    assert_in_use(err, kind, "", "dev/app")


@KINDS
def test_global_set_used_by_a_global_installation_is_in_use(stub, kind):
    kind.create(stub, namespace="")
    installation(stub, "app", namespace="", **{kind.installation_field: ["myset"]})

    err = kind.fail(stub, "Delete", namespace="", name="myset")

    assert_in_use(err, kind, "", "app (global namespace)")


@KINDS
def test_namespaced_set_shadows_the_global_one(stub, kind):
    kind.create(stub, namespace="")
    kind.create(stub, namespace="dev")
    installation(stub, "app", namespace="dev", **{kind.installation_field: ["myset"]})

    # dev/app resolves "myset" to dev/myset, so the global set is free to go...
    kind.call(stub, "Delete", namespace="", name="myset")
    # ...but the namespaced one is not.
    assert_in_use(kind.fail(stub, "Delete", namespace="dev", name="myset"), kind, "dev", "dev/app")


@KINDS
def test_deleting_the_shadowing_set_exposes_the_global_one(stub, kind):
    kind.create(stub, namespace="")
    kind.create(stub, namespace="dev")
    installation(stub, "app", namespace="dev", **{kind.installation_field: ["myset"]})
    kind.call(stub, "Delete", namespace="dev", name="myset", force=True)

    assert_in_use(kind.fail(stub, "Delete", namespace="", name="myset"), kind, "", "dev/app")


# --- lists -----------------------------------------------------------------------------


@pytest.fixture
def sets(stub):
    rows = [
        ("", "global-creds", {"env": "all"}),
        ("dev", "azure", {"cloud": "azure", "env": "dev"}),
        ("dev", "aws", {"cloud": "aws", "env": "dev"}),
        ("dev", "AWS-legacy", {"cloud": "aws"}),
        ("prod", "aws", {"cloud": "aws", "env": "prod"}),
    ]
    for kind in (CREDS, PARAMS):
        for ns, name, labels in rows:
            kind.create(stub, name, ns, labels=labels)
    return rows


def names(kind: Kind, resp: Any) -> list[tuple[str, str]]:
    return [(s.namespace, s.name) for s in kind.items(resp)]


@KINDS
def test_list_filters(stub, kind, sets):
    assert names(kind, kind.call(stub, "List", namespace="dev")) == [
        ("dev", "AWS-legacy"),
        ("dev", "aws"),
        ("dev", "azure"),
    ]
    assert names(kind, kind.call(stub, "List")) == [("", "global-creds")]
    everything = kind.call(stub, "List", all_namespaces=True)
    assert names(kind, everything) == sorted((ns, n) for ns, n, _ in sets)
    assert everything.total_size == 5
    aws = kind.call(stub, "List", all_namespaces=True, name="aws")
    assert names(kind, aws) == [("dev", "aws"), ("prod", "aws")]
    assert aws.total_size == 2
    anded = kind.call(stub, "List", all_namespaces=True, labels={"cloud": "aws", "env": "dev"})
    assert names(kind, anded) == [("dev", "aws")]
    assert anded.total_size == 1


@KINDS
@pytest.mark.parametrize(
    "filters", [{"all_namespaces": True}, {"all_namespaces": True, "labels": {"cloud": "aws"}}]
)
def test_list_paging_returns_every_row_once(stub, kind, sets, filters):
    want = names(kind, kind.call(stub, "List", **filters))
    got: list[tuple[str, str]] = []
    token = ""
    while True:
        resp = kind.call(stub, "List", page_size=2, page_token=token, **filters)
        assert resp.total_size == len(want)
        got += names(kind, resp)
        token = resp.next_page_token
        if not token:
            break
    assert got == want


@KINDS
def test_list_skip(stub, kind, sets):
    resp = kind.call(stub, "List", all_namespaces=True, skip=3)
    assert names(kind, resp) == [("dev", "azure"), ("prod", "aws")]
    assert resp.total_size == 5


def test_credential_list_never_carries_literals(stub, sets):
    CREDS.create(stub, "lit", "dev", entries=[entry("token", value=SECRET)])
    resp = stub.ListCredentialSets(pb.ListCredentialSetsRequest(all_namespaces=True, page_size=500))
    assert SECRET.encode() not in resp.SerializeToString()
    lit = next(s for s in resp.credential_sets if s.name == "lit")
    assert lit.credentials[0].source == ValueSource(redacted=True)


def test_credential_set_read_modify_write_keeps_redacted_literals(stub):
    from porter.bundle.v1.value_set_pb2 import CredentialSet as CS
    from porter.bundle.v1.value_set_pb2 import NamedValueSource as NVS
    from porter.bundle.v1.value_set_pb2 import ValueSource as VS

    literal = VS()
    literal.value.string_value = "kept-secret-99"
    created = stub.CreateCredentialSet(
        pb.CreateCredentialSetRequest(
            credential_set=CS(
                namespace="dev", name="rmw", credentials=[NVS(name="token", source=literal)]
            )
        )
    ).credential_set
    assert created.credentials[0].source.redacted
    # The client edits what it read: adds an entry and sends the redacted one back untouched.
    created.credentials.append(NVS(name="user", source=VS(env="USER")))
    updated = stub.UpdateCredentialSet(
        pb.UpdateCredentialSetRequest(credential_set=created)
    ).credential_set
    assert [c.name for c in updated.credentials] == ["token", "user"]
    assert updated.credentials[0].source.redacted
    # A redacted entry that names no stored literal is still refused (no source).
    updated.credentials.append(NVS(name="other", source=VS(redacted=True)))
    err = failure(stub.UpdateCredentialSet, pb.UpdateCredentialSetRequest(credential_set=updated))
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT
