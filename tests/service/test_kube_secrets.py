"""``--secret-store kubernetes``: ``secret: X`` is the Kubernetes Secret X (key ``value``) in the
action's namespace, read with the service account token, against a local stand-in of the API."""

from __future__ import annotations

import json

import pytest

from porter.bundle.v1 import porter_bundle_pb2 as pb
from porter.bundle.v1.installation_pb2 import BundleReference, Installation
from porter.bundle.v1.value_set_pb2 import CredentialSet, NamedValueSource, ValueSource
from porter_bundle.errors import FailedPrecondition
from porter_bundle.service import Services
from porter_bundle.service.kube_secrets import KubernetesSecretStore
from porter_bundle.service.sources import SourceResolver
from tests.fake_executor import FakeExecutor, services_on
from tests.helpers import failure, wait_until
from tests.kube_api import KubeApi, kube_api


@pytest.fixture
def api():
    with kube_api() as running:
        running.secrets[("team-a", "db")] = {"value": "s3cret-pw", "other": "x"}
        running.secrets[("team-a", "nokey")] = {"password": "y"}
        running.secrets[("porter-bundle", "global-one")] = {"value": "g"}
        yield running


@pytest.fixture
def kube_store(api: KubeApi, tmp_path):
    sa = tmp_path / "sa"
    sa.mkdir()
    (sa / "token").write_text("sa-token\n")
    (sa / "namespace").write_text("porter-bundle")
    store = KubernetesSecretStore(api.url, token_file=sa / "token")
    yield store
    store.close()


def resolve(store: KubernetesSecretStore, name: str, namespace: str) -> object:
    return SourceResolver(store).resolve("credential 'db'", ValueSource(secret=name), namespace)


def test_the_secret_of_the_actions_namespace_key_value(kube_store, api):
    assert resolve(kube_store, "db", "team-a") == "s3cret-pw"
    assert api.requests[-1] == ("/api/v1/namespaces/team-a/secrets/db", "Bearer sa-token")
    # The global namespace reads the server's own namespace (the service account's).
    assert resolve(kube_store, "global-one", "") == "g"


@pytest.mark.parametrize(
    ("name", "namespace", "why"),
    [
        ("db", "team-b", "Kubernetes Secret 'db' in namespace 'team-b' does not exist"),
        ("nokey", "team-a", "Kubernetes Secret 'nokey' in namespace 'team-a' has no key 'value'"),
        ("Bad_Name", "team-a", "cannot exist: not a valid Kubernetes name"),
    ],
)
def test_missing_secret_or_key_is_a_clear_failed_precondition(kube_store, name, namespace, why):
    with pytest.raises(FailedPrecondition) as caught:
        resolve(kube_store, name, namespace)
    assert why in caught.value.message and caught.value.reason == "SOURCE_UNRESOLVED"
    assert "s3cret" not in caught.value.message and "password" not in caught.value.message


def test_a_refused_token_and_an_unreachable_api_say_so(kube_store, api, tmp_path):
    api.token = "another"
    with pytest.raises(
        FailedPrecondition, match=r"refused the server's service account \(HTTP 401\)"
    ):
        resolve(kube_store, "db", "team-a")
    gone = KubernetesSecretStore("http://127.0.0.1:9", token_file=kube_store.token_file)
    with pytest.raises(FailedPrecondition, match="cannot be reached"):
        resolve(gone, "db", "team-a")
    gone.close()
    with pytest.raises(ValueError, match="needs the API's URL"):
        KubernetesSecretStore("")


BUNDLE = {
    "schemaVersion": "v1.0.0",
    "name": "app",
    "version": "1.0.0",
    "invocationImages": [{"imageType": "docker", "image": "localhost/app-installer:v1"}],
    "credentials": {"password": {"env": "PASSWORD", "required": True}},
}


@pytest.fixture
def fake() -> FakeExecutor:
    return FakeExecutor()


@pytest.fixture
def services(store, fake, kube_store) -> Services:
    return services_on(store, fake, secrets=kube_store)


def test_an_action_gets_the_secret_of_its_namespace(stub, fake):
    stub.CreateBundle(
        pb.CreateBundleRequest(
            reference="localhost:5000/app:v1.0.0", bundle_json=json.dumps(BUNDLE)
        )
    )
    for ns in ("team-a", "team-b"):
        stub.CreateCredentialSet(
            pb.CreateCredentialSetRequest(
                credential_set=CredentialSet(
                    namespace=ns, name="creds",
                    credentials=[NamedValueSource(name="password", source=ValueSource(secret="db"))],
                )
            )
        )  # fmt: skip
        stub.CreateInstallation(
            pb.CreateInstallationRequest(
                installation=Installation(
                    namespace=ns, name="app", credential_sets=["creds"],
                    bundle=BundleReference(repository="localhost:5000/app", version="1.0.0"),
                )
            )
        )  # fmt: skip
    stub.ExecuteAction(pb.ExecuteActionRequest(namespace="team-a", name="app", action="install"))
    wait_until(lambda: fake.specs, "the run to start")
    assert fake.specs[0].env["PASSWORD"] == "s3cret-pw"
    err = failure(
        stub.ExecuteAction,
        pb.ExecuteActionRequest(namespace="team-b", name="app", action="install"),
    )
    assert err.code.name == "FAILED_PRECONDITION" and err.reason == "SOURCE_UNRESOLVED"
    assert "Kubernetes Secret 'db' in namespace 'team-b' does not exist" in err.message
