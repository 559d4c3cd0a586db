"""Installations through real stubs: create/get/list/update/delete and their rules.

Runs are recorded through the service layer (the executor's side); everything else goes
through the gRPC API. Validation of individual fields lives in
tests/service/test_validation_rules.py.
"""

from __future__ import annotations

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.json_format import MessageToDict
from google.protobuf.struct_pb2 import Struct
from google.protobuf.timestamp_pb2 import Timestamp

from porter.bundle.v1 import porter_bundle_pb2 as pb
from porter.bundle.v1.installation_pb2 import (
    INSTALLATION_STATE_DEFINED,
    INSTALLATION_STATE_INSTALLED,
    BundleReference,
    Installation,
    InstallationStatus,
)
from porter.bundle.v1.run_pb2 import (
    ACTION_INSTALL,
    ACTION_INVOKE,
    ACTION_UNINSTALL,
    ACTION_UPGRADE,
    RUN_STATE_FAILED,
    RUN_STATE_SUCCEEDED,
)
from porter_bundle.service.runs import NewRun, OutputValue
from tests.helpers import failure

# --- builders ------------------------------------------------------------------------


def struct(**values: object) -> Struct:
    s = Struct()
    s.update(values)
    return s


def bundle(repository: str = "localhost:5000/mybuns", **kw: str) -> BundleReference:
    if not kw:
        kw = {"version": "v0.1.2"}
    return BundleReference(repository=repository, **kw)


def installation(name: str = "mybuns", namespace: str = "dev", **kw: object) -> Installation:
    kw.setdefault("bundle", bundle())
    return Installation(namespace=namespace, name=name, **kw)  # type: ignore[arg-type]


def create(stub, name: str = "mybuns", namespace: str = "dev", **kw: object) -> Installation:
    req = pb.CreateInstallationRequest(installation=installation(name, namespace, **kw))
    return stub.CreateInstallation(req).installation


def get(stub, name: str = "mybuns", namespace: str = "dev") -> Installation:
    return stub.GetInstallation(
        pb.GetInstallationRequest(namespace=namespace, name=name)
    ).installation


def update(stub, inst: Installation, *paths: str) -> Installation:
    req = pb.UpdateInstallationRequest(installation=inst, update_mask=FieldMask(paths=list(paths)))
    return stub.UpdateInstallation(req).installation


def delete_req(name: str = "mybuns", namespace: str = "dev", **kw: object):
    return pb.DeleteInstallationRequest(namespace=namespace, name=name, **kw)  # type: ignore[arg-type]


def listing(stub, **kw: object) -> pb.ListInstallationsResponse:
    return stub.ListInstallations(pb.ListInstallationsRequest(**kw))  # type: ignore[arg-type]


def addresses(resp: pb.ListInstallationsResponse) -> list[tuple[str, str]]:
    return [(i.namespace, i.name) for i in resp.installations]


def record_run(
    server, action: int, state: int, name: str = "mybuns", namespace: str = "dev", outputs=()
):
    """Records a finished run the way the executor does."""
    runs = server.services.runs
    run, _ = runs.create(
        namespace,
        name,
        NewRun(
            action=action,
            custom_action="status" if action == ACTION_INVOKE else "",
            bundle_reference="localhost:5000/mybuns:v0.1.2",
            bundle_version="0.1.2",
        ),
    )
    runs.start(run.id)
    return runs.finish(run.id, state, "", outputs)


FULL = {
    "labels": {"app": "wordpress", "example.com/tier": "web"},
    "bundle": bundle("ghcr.io/getporter/examples/porter-hello", tag="v0.2.0"),
    "parameters": struct(logLevel=3, name="Porter Operator", tags=["a", 1], cfg={"x": True}),
    "parameter_sets": ["p1", "p2"],
    "credential_sets": ["c1"],
    "custom": struct(io_cnab_docker={"privileged": True}),
    "schema_version": "1.0.2",
}

# Each writable field, with a value different from FULL's.
CHANGES = {
    "labels": {"app": "mysql"},
    "bundle": bundle("localhost:5000/other", digest="sha256:" + "ab" * 32),
    "parameters": struct(logLevel=5),
    "parameter_sets": ["p3"],
    "credential_sets": ["c2", "c1"],
    "uninstalled": True,
    "custom": struct(other="x"),
    "schema_version": "1.0.3",
}


def writable(inst: Installation) -> dict[str, object]:
    """The writable fields of an installation, comparable across messages."""
    d = MessageToDict(inst, preserving_proto_field_name=True)
    return {f: d.get(f) for f in CHANGES}


# --- create and get ------------------------------------------------------------------


def test_create_stores_every_field_and_get_returns_it(stub):
    created = create(stub, **FULL)

    assert len(created.id) == 26
    assert created.namespace == "dev" and created.name == "mybuns"
    assert writable(created) == writable(installation(**FULL))
    assert created.etag
    assert created.status == InstallationStatus(state=INSTALLATION_STATE_DEFINED)
    assert created.create_time == created.update_time
    assert created.create_time.seconds > 0
    assert get(stub) == created


def test_schema_version_defaults_to_porters_and_a_given_one_is_kept(stub):
    assert create(stub, name="a").schema_version == "1.0.2"
    assert create(stub, name="b", schema_version="1.0.1").schema_version == "1.0.1"


def test_output_only_fields_in_create_are_ignored(stub):
    long_ago = Timestamp(seconds=86400)
    given = installation(
        id="01ARZ3NDEKTSV4RRFFQ69G5FAV",
        etag="client-etag",
        create_time=long_ago,
        update_time=long_ago,
        status=InstallationStatus(
            state=INSTALLATION_STATE_INSTALLED,
            run_id="01ARZ3NDEKTSV4RRFFQ69G5FAV",
            action="install",
        ),
    )
    created = stub.CreateInstallation(pb.CreateInstallationRequest(installation=given)).installation

    assert created.id != given.id
    assert created.etag != "client-etag"
    assert created.create_time.seconds > long_ago.seconds
    assert created.update_time == created.create_time
    assert created.status == InstallationStatus(state=INSTALLATION_STATE_DEFINED)
    assert get(stub) == created
    # The client's status did not make it deletable-only-with-force.
    stub.DeleteInstallation(delete_req())


def test_duplicate_create_is_already_exists(stub):
    first = create(stub)
    err = failure(
        stub.CreateInstallation, pb.CreateInstallationRequest(installation=installation())
    )

    assert err.code == grpc.StatusCode.ALREADY_EXISTS
    assert err.reason == "INSTALLATION_EXISTS"
    assert err.domain == "porter-bundle"
    assert err.metadata == {"namespace": "dev", "name": "mybuns"}
    assert get(stub) == first  # untouched


def test_same_name_in_other_namespaces_is_fine(stub):
    ids = {create(stub, namespace=ns).id for ns in ("dev", "prod", "")}

    assert len(ids) == 3
    assert get(stub, namespace="").namespace == ""
    assert listing(stub, all_namespaces=True).total_size == 3


def test_names_are_case_sensitive(stub):
    create(stub, name="MyBuns")
    create(stub, name="mybuns")

    assert get(stub, name="MyBuns").name == "MyBuns"
    assert listing(stub, namespace="dev").total_size == 2


def test_get_missing_is_not_found(stub):
    create(stub, namespace="prod")
    err = failure(stub.GetInstallation, pb.GetInstallationRequest(namespace="dev", name="mybuns"))

    assert err.code == grpc.StatusCode.NOT_FOUND
    assert err.reason == "INSTALLATION_NOT_FOUND"
    assert err.metadata == {"namespace": "dev", "name": "mybuns"}


# --- update ----------------------------------------------------------------------------


@pytest.mark.parametrize("path", list(CHANGES))
def test_update_mask_path_changes_only_that_field(stub, path):
    original = create(stub, **FULL)
    changed = installation(**{**FULL, path: CHANGES[path]})

    updated = update(stub, changed, path)

    want = writable(original)
    want[path] = writable(changed)[path]
    assert writable(updated) == want
    assert get(stub) == updated
    assert updated.id == original.id
    assert updated.create_time == original.create_time
    assert updated.status == original.status


def test_update_with_empty_mask_replaces_every_writable_field(stub):
    original = create(stub, **FULL)
    changed = installation(**CHANGES)

    updated = update(stub, changed)

    assert writable(updated) == writable(changed)
    assert get(stub) == updated
    # Fields the request leaves unset are cleared, not kept.
    bare = update(stub, installation())
    assert (dict(bare.labels), bare.parameter_sets, bare.credential_sets) == ({}, [], [])
    assert not bare.HasField("parameters") and not bare.HasField("custom")
    assert bare.uninstalled is False
    assert bare.schema_version == "1.0.2"
    assert bare.id == original.id


def test_update_may_repeat_a_mask_path(stub):
    create(stub, **FULL)
    updated = update(stub, installation(labels={"a": "b"}), "labels", "labels")
    assert dict(updated.labels) == {"a": "b"}


@pytest.mark.parametrize("bad", ["name", "etag", "status", "id", "bundle.tag", "Labels", ""])
def test_update_mask_with_unknown_path_is_invalid_argument(stub, bad):
    original = create(stub, **FULL)
    err = failure(
        stub.UpdateInstallation,
        pb.UpdateInstallationRequest(
            installation=installation(**CHANGES), update_mask=FieldMask(paths=["labels", bad])
        ),
    )

    assert err.code == grpc.StatusCode.INVALID_ARGUMENT
    assert list(err.violations) == ["update_mask.paths[1]"]
    assert repr(bad) in err.violations["update_mask.paths[1]"]
    assert get(stub) == original  # nothing applied


def test_update_with_stale_etag_is_aborted(stub):
    original = create(stub)
    first = update(stub, installation(labels={"v": "1"}, etag=original.etag), "labels")
    err = failure(
        stub.UpdateInstallation,
        pb.UpdateInstallationRequest(
            installation=installation(labels={"v": "2"}, etag=original.etag)
        ),
    )

    assert err.code == grpc.StatusCode.ABORTED
    assert err.reason == "ETAG_MISMATCH"
    assert err.metadata == {"etag": first.etag}
    assert dict(get(stub).labels) == {"v": "1"}


def test_update_with_current_etag_works_and_changes_the_etag(stub):
    original = create(stub)
    updated = update(stub, installation(labels={"v": "1"}, etag=original.etag), "labels")

    assert updated.etag and updated.etag != original.etag
    assert updated.update_time.ToDatetime() >= original.update_time.ToDatetime()
    again = update(stub, installation(labels={"v": "2"}, etag=updated.etag), "labels")
    assert again.etag not in (original.etag, updated.etag)


def test_run_status_changes_make_an_earlier_etag_stale(server, stub):
    original = create(stub)
    record_run(server, ACTION_INSTALL, RUN_STATE_SUCCEEDED)

    err = failure(
        stub.UpdateInstallation,
        pb.UpdateInstallationRequest(installation=installation(etag=original.etag)),
    )
    assert err.code == grpc.StatusCode.ABORTED
    assert err.reason == "ETAG_MISMATCH"


def test_update_keeps_server_owned_status(server, stub):
    create(stub)
    record_run(server, ACTION_INSTALL, RUN_STATE_SUCCEEDED)
    before = get(stub)

    updated = update(stub, installation(status=InstallationStatus(), labels={"a": "b"}))

    assert updated.status == before.status
    assert updated.status.state == INSTALLATION_STATE_INSTALLED


def test_update_missing_is_not_found(stub):
    err = failure(
        stub.UpdateInstallation, pb.UpdateInstallationRequest(installation=installation())
    )
    assert err.code == grpc.StatusCode.NOT_FOUND
    assert err.reason == "INSTALLATION_NOT_FOUND"


def test_update_that_would_make_it_invalid_is_refused_and_changes_nothing(stub):
    original = create(stub, **FULL)
    no_bundle = Installation(namespace="dev", name="mybuns")

    err = failure(
        stub.UpdateInstallation,
        pb.UpdateInstallationRequest(
            installation=no_bundle, update_mask=FieldMask(paths=["bundle"])
        ),
    )

    assert err.code == grpc.StatusCode.INVALID_ARGUMENT
    assert list(err.violations) == ["installation.bundle"]
    assert get(stub) == original


# --- delete ----------------------------------------------------------------------------


def test_delete_missing_is_not_found(stub):
    err = failure(stub.DeleteInstallation, delete_req())
    assert err.code == grpc.StatusCode.NOT_FOUND
    assert err.reason == "INSTALLATION_NOT_FOUND"
    assert err.metadata == {"namespace": "dev", "name": "mybuns"}


def test_delete_of_a_never_installed_installation(stub):
    create(stub)
    create(stub, name="other")

    stub.DeleteInstallation(delete_req())

    assert failure(
        stub.GetInstallation, pb.GetInstallationRequest(namespace="dev", name="mybuns")
    ).code == (grpc.StatusCode.NOT_FOUND)
    resp = listing(stub, namespace="dev")
    assert addresses(resp) == [("dev", "other")]
    assert resp.total_size == 1
    assert failure(stub.DeleteInstallation, delete_req()).code == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize(
    ("history", "last_action"),
    [
        ([(ACTION_INSTALL, RUN_STATE_SUCCEEDED)], "install"),
        ([(ACTION_INSTALL, RUN_STATE_FAILED)], "install"),
        ([(ACTION_INSTALL, RUN_STATE_SUCCEEDED), (ACTION_UPGRADE, RUN_STATE_SUCCEEDED)], "upgrade"),
        (
            [(ACTION_INSTALL, RUN_STATE_SUCCEEDED), (ACTION_UNINSTALL, RUN_STATE_FAILED)],
            "uninstall",
        ),
        (
            [(ACTION_UNINSTALL, RUN_STATE_SUCCEEDED), (ACTION_INSTALL, RUN_STATE_SUCCEEDED)],
            "install",
        ),
        ([(ACTION_INSTALL, RUN_STATE_SUCCEEDED), (ACTION_INVOKE, RUN_STATE_SUCCEEDED)], "status"),
    ],
)
def test_installed_installation_is_refused_unless_forced(server, stub, history, last_action):
    create(stub)
    for action, state in history:
        record_run(server, action, state)

    err = failure(stub.DeleteInstallation, delete_req())

    assert err.code == grpc.StatusCode.FAILED_PRECONDITION
    assert err.reason == "INSTALLATION_INSTALLED"
    assert err.metadata == {"namespace": "dev", "name": "mybuns", "last_action": last_action}
    assert get(stub).name == "mybuns"

    stub.DeleteInstallation(delete_req(force=True))
    assert failure(
        stub.GetInstallation, pb.GetInstallationRequest(namespace="dev", name="mybuns")
    ).code == (grpc.StatusCode.NOT_FOUND)


@pytest.mark.parametrize(
    "history",
    [
        [(ACTION_INSTALL, RUN_STATE_SUCCEEDED), (ACTION_UNINSTALL, RUN_STATE_SUCCEEDED)],
        [
            (ACTION_INSTALL, RUN_STATE_SUCCEEDED),
            (ACTION_UNINSTALL, RUN_STATE_SUCCEEDED),
            (ACTION_INVOKE, RUN_STATE_SUCCEEDED),
        ],
        [(ACTION_INVOKE, RUN_STATE_SUCCEEDED)],
    ],
)
def test_not_installed_installation_is_deletable(server, stub, history):
    create(stub)
    for action, state in history:
        record_run(server, action, state)

    stub.DeleteInstallation(delete_req())

    assert listing(stub, namespace="dev").total_size == 0


def test_delete_with_stale_etag_is_aborted_and_current_etag_works(stub):
    original = create(stub)
    current = update(stub, installation(labels={"a": "b"}), "labels")

    err = failure(stub.DeleteInstallation, delete_req(etag=original.etag))
    assert err.code == grpc.StatusCode.ABORTED
    assert err.reason == "ETAG_MISMATCH"
    assert err.metadata == {"etag": current.etag}
    assert get(stub) == current

    stub.DeleteInstallation(delete_req(etag=current.etag))
    assert listing(stub, namespace="dev").total_size == 0


def test_delete_removes_runs_and_outputs_so_a_recreated_one_starts_clean(server, stub):
    create(stub)
    record_run(
        server, ACTION_INSTALL, RUN_STATE_SUCCEEDED, outputs=[OutputValue("port", 8080, "integer")]
    )
    record_run(server, ACTION_UNINSTALL, RUN_STATE_SUCCEEDED)
    runs = stub.ListInstallationRuns(pb.ListInstallationRunsRequest(namespace="dev", name="mybuns"))
    assert runs.total_size == 2

    stub.DeleteInstallation(delete_req())
    err = failure(
        stub.ListInstallationRuns, pb.ListInstallationRunsRequest(namespace="dev", name="mybuns")
    )
    assert err.code == grpc.StatusCode.NOT_FOUND
    assert err.reason == "INSTALLATION_NOT_FOUND"

    recreated = create(stub)
    runs = stub.ListInstallationRuns(pb.ListInstallationRunsRequest(namespace="dev", name="mybuns"))
    assert list(runs.runs) == [] and runs.total_size == 0
    assert recreated.status == InstallationStatus(state=INSTALLATION_STATE_DEFINED)
    err = failure(
        stub.ListInstallationRunOutputs,
        pb.ListInstallationRunOutputsRequest(namespace="dev", name="mybuns", any_result=True),
    )
    assert err.code == grpc.StatusCode.NOT_FOUND
    assert err.reason == "NO_LATEST_RUN"
    # A new install/delete cycle is judged on the new runs only.
    stub.DeleteInstallation(delete_req())


# --- lists -----------------------------------------------------------------------------


@pytest.fixture
def population(stub):
    """Installations across namespaces with labels; returns their addresses, sorted."""
    rows = [
        ("", "global-app", {"app": "web"}),
        ("", "zeta", {}),
        ("dev", "mybuns", {"app": "web", "tier": "front"}),
        ("dev", "MyBuns-Upper", {"app": "web"}),
        ("dev", "my_buns", {"app": "db", "tier": "front"}),
        ("dev", "myxbuns", {"tier": "front"}),
        ("prod", "mybuns", {"app": "web", "tier": "front"}),
        ("prod", "alpha", {"app": "web", "tier": "back"}),
        ("qa", "pct100", {}),
    ]
    for ns, name, labels in reversed(rows):  # inserted out of order on purpose
        create(stub, name=name, namespace=ns, labels=labels)
    return sorted((ns, name) for ns, name, _ in rows)


def test_list_namespace_filter(stub, population):
    dev = listing(stub, namespace="dev")
    assert addresses(dev) == [a for a in population if a[0] == "dev"]
    assert dev.total_size == 4
    assert dev.next_page_token == ""

    assert listing(stub, namespace="nope").installations == []
    assert listing(stub, namespace="nope").total_size == 0


def test_list_empty_namespace_means_global_only(stub, population):
    resp = listing(stub)
    assert addresses(resp) == [("", "global-app"), ("", "zeta")]
    assert resp.total_size == 2


def test_list_all_namespaces_sorted_by_namespace_then_name(stub, population):
    resp = listing(stub, all_namespaces=True, namespace="ignored")
    assert addresses(resp) == population
    assert resp.total_size == len(population)
    # Byte order: upper case sorts before lower case.
    assert [n for ns, n in addresses(resp) if ns == "dev"] == [
        "MyBuns-Upper",
        "my_buns",
        "mybuns",
        "myxbuns",
    ]


def test_list_name_filter_is_a_case_sensitive_substring(stub, population):
    resp = listing(stub, all_namespaces=True, name="buns")
    assert addresses(resp) == [
        ("dev", "my_buns"),
        ("dev", "mybuns"),
        ("dev", "myxbuns"),
        ("prod", "mybuns"),
    ]
    assert resp.total_size == 4
    assert addresses(listing(stub, all_namespaces=True, name="Buns")) == [("dev", "MyBuns-Upper")]


def test_list_name_filter_has_no_wildcards(stub, population):
    assert addresses(listing(stub, namespace="dev", name="my_buns")) == [("dev", "my_buns")]
    assert addresses(listing(stub, all_namespaces=True, name="%")) == []
    assert listing(stub, all_namespaces=True, name="%").total_size == 0


def test_list_labels_are_anded(stub, population):
    web = listing(stub, all_namespaces=True, labels={"app": "web"})
    assert addresses(web) == [
        ("", "global-app"),
        ("dev", "MyBuns-Upper"),
        ("dev", "mybuns"),
        ("prod", "alpha"),
        ("prod", "mybuns"),
    ]
    both = listing(stub, all_namespaces=True, labels={"app": "web", "tier": "front"})
    assert addresses(both) == [("dev", "mybuns"), ("prod", "mybuns")]
    assert both.total_size == 2
    assert addresses(listing(stub, namespace="dev", labels={"tier": "front", "app": "db"})) == [
        ("dev", "my_buns")
    ]
    assert listing(stub, all_namespaces=True, labels={"app": "web", "tier": "nope"}).total_size == 0


def test_list_combines_every_filter(stub, population):
    resp = listing(stub, namespace="dev", name="buns", labels={"tier": "front"})
    assert addresses(resp) == [("dev", "my_buns"), ("dev", "mybuns"), ("dev", "myxbuns")]
    assert resp.total_size == 3


def walk(stub, page_size: int, **filters: object) -> tuple[list[tuple[str, str]], list[int]]:
    """Every page of a list: the rows in order and the total_size each page reported."""
    rows: list[tuple[str, str]] = []
    totals: list[int] = []
    token = ""
    while True:
        resp = listing(stub, page_size=page_size, page_token=token, **filters)
        assert len(resp.installations) <= page_size
        rows += addresses(resp)
        totals.append(resp.total_size)
        token = resp.next_page_token
        if not token:
            return rows, totals


@pytest.mark.parametrize(
    "filters",
    [
        {"all_namespaces": True},
        {"namespace": "dev"},
        {"all_namespaces": True, "labels": {"app": "web"}},
        {"all_namespaces": True, "name": "a"},
        {"namespace": "prod", "labels": {"app": "web"}},
    ],
)
@pytest.mark.parametrize("page_size", [1, 2, 3, 100])
def test_page_walk_returns_every_row_once_with_a_steady_total(stub, population, filters, page_size):
    everything = addresses(listing(stub, **filters))

    rows, totals = walk(stub, page_size, **filters)

    assert rows == everything
    assert totals == [len(everything)] * len(totals)
    assert len(totals) == max(1, -(-len(everything) // page_size))


def test_skip_drops_rows_before_the_first_page(stub, population):
    resp = listing(stub, all_namespaces=True, skip=2, page_size=3)
    assert addresses(resp) == population[2:5]
    assert resp.total_size == len(population)
    rest = listing(stub, all_namespaces=True, page_token=resp.next_page_token, page_size=100)
    assert addresses(rest) == population[5:]

    beyond = listing(stub, all_namespaces=True, skip=100)
    assert list(beyond.installations) == [] and beyond.next_page_token == ""
    assert beyond.total_size == len(population)

    filtered = listing(stub, namespace="dev", labels={"tier": "front"}, skip=1)
    assert addresses(filtered) == [("dev", "mybuns"), ("dev", "myxbuns")]
    assert filtered.total_size == 3


def test_total_size_follows_creates_and_deletes(stub, population):
    assert listing(stub, all_namespaces=True).total_size == 9
    stub.DeleteInstallation(delete_req("mybuns", "prod"))
    assert listing(stub, all_namespaces=True).total_size == 8
    assert listing(stub, namespace="prod").total_size == 1
    assert listing(stub, all_namespaces=True, labels={"tier": "front"}).total_size == 3
    create(stub, name="new", namespace="prod", labels={"tier": "front"})
    assert listing(stub, namespace="prod").total_size == 2
    assert listing(stub, all_namespaces=True, labels={"tier": "front"}).total_size == 4


def test_list_returns_full_messages(stub):
    created = create(stub, **FULL)
    assert listing(stub, namespace="dev").installations == [created]


@pytest.mark.slow
def test_page_size_defaults_to_100_and_is_clamped_to_500(server, stub):
    svc = server.services.installations
    for i in range(501):
        svc.create(installation(name=f"i{i:04d}", namespace="bulk"))

    default = listing(stub, namespace="bulk")
    assert len(default.installations) == 100
    assert default.total_size == 501

    big = listing(stub, namespace="bulk", page_size=10_000)
    assert len(big.installations) == 500
    assert big.next_page_token
    assert big.total_size == 501
    last = listing(stub, namespace="bulk", page_size=10_000, page_token=big.next_page_token)
    assert [i.name for i in last.installations] == ["i0500"]
    assert last.next_page_token == ""
