"""The registry client against a real docker-registry, behind a bearer-token proxy."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator

import pytest

from porter_bundle.bundles import layout
from porter_bundle.bundles.registry import (
    RegistryBadContent,
    RegistryClient,
    RegistryForbidden,
    RegistryNotFound,
    RegistryUnauthorized,
    RegistryUnreachable,
    Repository,
)
from tests.conftest import PushImage, RegistryLogin
from tests.engine import Engine
from tests.helpers import FIXTURES
from tests.oci import bundle_doc, publish_doc
from tests.registry_proxy import Fault, RegistryProxy


@pytest.fixture
def repo() -> str:
    return f"team/app-{secrets.token_hex(4)}"


@pytest.fixture
def client(registry_proxy: RegistryProxy) -> Iterator[RegistryClient]:
    c = RegistryClient(insecure_hosts=frozenset({registry_proxy.host}))
    yield c
    c.close()


@pytest.fixture
def published(
    registry_proxy: RegistryProxy, push_image: PushImage, repo: str, client: RegistryClient
) -> tuple[str, str, bytes]:
    """(repository, bundle digest, bundle.json) of a bundle published as repo:v0.1.0."""
    host = registry_proxy.host
    # Pushed to the registry itself (podman streams chunked uploads), named through the proxy.
    push_image(registry_proxy.upstream, f"{repo}:installer")
    image = f"{host}/{repo}:installer"
    pushed = publish_doc(host, f"{host}/{repo}:v0.1.0", bundle_doc(image), client=client)
    registry_proxy.reset()
    return f"{host}/{repo}", pushed.digest, pushed.bundle_json


def test_repository_hosts() -> None:
    assert Repository.parse("ghcr.io/getporter/examples/porter-hello") == Repository(
        "ghcr.io", "getporter/examples/porter-hello"
    )
    assert Repository.parse("localhost/app") == Repository("localhost", "app")
    assert Repository.parse("127.0.0.1:5000/a/b").host == "127.0.0.1:5000"
    hub = Repository.parse("getporter/hello")
    assert (hub.host, hub.api_host, hub.name) == (
        "docker.io",
        "registry-1.docker.io",
        "getporter/hello",
    )
    assert Repository.parse("alpine").name == "library/alpine"


def test_pull_by_tag_and_by_digest(
    published: tuple[str, str, bytes], registry_proxy: RegistryProxy
) -> None:
    repository, digest, raw = published
    client = RegistryClient(insecure_hosts=frozenset({registry_proxy.host}))
    by_tag = client.pull(repository, "v0.1.0")
    assert by_tag.digest == digest
    assert by_tag.bundle_json == raw
    assert by_tag.bundle_json_digest == layout.digest_of(raw)
    # What was pushed is exactly the cnab-to-oci layout of the bundle.
    assert by_tag.index == layout.build(json.loads(raw)).index
    assert client.pull(repository, digest) == by_tag
    assert client.resolve(repository, "v0.1.0") == digest
    # Anonymous bearer tokens, one per scope, reused.
    assert len(registry_proxy.requests("GET", "/token")) == 1
    assert all(
        s.authorization.startswith("Bearer ") for s in registry_proxy.requests(contains="/v2/")[1:]
    )
    client.close()


def test_the_invocation_image_is_referenced_by_digest(published: tuple[str, str, bytes]) -> None:
    repository, _, raw = published
    image = json.loads(raw)["invocationImages"][0]
    assert image["image"] == f"{repository}@{image['contentDigest']}"
    assert image["mediaType"] in layout.MANIFEST_TYPES
    assert image["size"] > 0


def test_unknown_tag_and_repository(
    published: tuple[str, str, bytes], client: RegistryClient
) -> None:
    repository, _, _ = published
    with pytest.raises(RegistryNotFound, match="MANIFEST_UNKNOWN"):
        client.pull(repository, "v9.9.9")
    with pytest.raises(RegistryNotFound):
        client.resolve(repository + "-missing", "v0.1.0")


def test_an_image_is_not_a_bundle(
    published: tuple[str, str, bytes], client: RegistryClient
) -> None:
    repository, _, _ = published
    with pytest.raises(RegistryBadContent, match="not a CNAB bundle"):
        client.pull(repository, "installer")


@pytest.mark.parametrize("path", ["/manifests/v0", "/manifests/sha256", "/blobs/"])
def test_digest_mismatch(
    published: tuple[str, str, bytes],
    client: RegistryClient,
    registry_proxy: RegistryProxy,
    path: str,
) -> None:
    repository, _, _ = published
    registry_proxy.corrupt = path
    with pytest.raises(RegistryBadContent, match="does not match"):
        client.pull(repository, "v0.1.0")


@pytest.mark.parametrize("status", [500, 502, 503, 429])
def test_server_errors_are_unavailable(
    published: tuple[str, str, bytes],
    client: RegistryClient,
    registry_proxy: RegistryProxy,
    status: int,
) -> None:
    repository, _, _ = published
    registry_proxy.faults.append(Fault(status))
    with pytest.raises(RegistryUnreachable, match=f"answered {status}") as caught:
        client.pull(repository, "v0.1.0")
    assert caught.value.host == registry_proxy.host


def test_unreachable_registry() -> None:
    with (
        RegistryClient(insecure_hosts=frozenset({"127.0.0.1:1"})) as client,
        pytest.raises(RegistryUnreachable, match="unreachable") as caught,
    ):
        client.pull("127.0.0.1:1/team/app", "v1")
    assert caught.value.host == "127.0.0.1:1"


def test_plain_http_only_for_insecure_hosts(published: tuple[str, str, bytes]) -> None:
    repository, _, _ = published
    with RegistryClient(timeout_seconds=5) as strict, pytest.raises(RegistryUnreachable):
        strict.pull(repository, "v0.1.0")


def test_forbidden_repository(
    published: tuple[str, str, bytes], client: RegistryClient, registry_proxy: RegistryProxy
) -> None:
    repository, _, _ = published
    registry_proxy.forbidden_repos.add(repository.split("/", 1)[1])
    with pytest.raises(RegistryForbidden, match="requested access to the resource is denied"):
        client.pull(repository, "v0.1.0")


def test_credentials_for_the_token_service(
    published: tuple[str, str, bytes], registry_proxy: RegistryProxy
) -> None:
    repository, digest, _ = published
    password = secrets.token_urlsafe(12)
    registry_proxy.users = {"alice": password}
    registry_proxy.anonymous = False
    insecure = frozenset({registry_proxy.host})

    with (
        RegistryClient(insecure_hosts=insecure) as anonymous,
        pytest.raises(RegistryUnauthorized, match="anonymous access is not allowed"),
    ):
        anonymous.pull(repository, "v0.1.0")

    wrong_auth = {registry_proxy.host: ("alice", "nope")}
    with (
        RegistryClient(insecure_hosts=insecure, auths=wrong_auth) as wrong,
        pytest.raises(RegistryUnauthorized, match="incorrect username or password") as caught,
    ):
        wrong.pull(repository, "v0.1.0")
    assert "nope" not in str(caught.value)

    right_auth = {registry_proxy.host: ("alice", password)}
    with RegistryClient(insecure_hosts=insecure, auths=right_auth) as right:
        assert right.pull(repository, "v0.1.0").digest == digest
    token_requests = registry_proxy.requests("GET", "/token")
    assert [t.authorization[:6] for t in token_requests] == ["", "Basic ", "Basic "]


def test_blob_redirects_do_not_carry_the_token(
    published: tuple[str, str, bytes], client: RegistryClient, registry_proxy: RegistryProxy
) -> None:
    repository, _, raw = published
    registry_proxy.redirect_blobs = True
    assert client.pull(repository, "v0.1.0").bundle_json == raw
    [storage] = registry_proxy.requests("GET", "/storage/")
    assert storage.authorization == ""


@pytest.mark.slow
def test_basic_auth_registry(oci_registry_with_auth: RegistryLogin, podman_service: Engine) -> None:
    """distribution's htpasswd auth answers a Basic challenge: configured credentials go there."""
    login = oci_registry_with_auth
    repo = f"private/app-{secrets.token_hex(4)}"
    insecure = frozenset({login.host})
    image = f"{login.host}/{repo}:installer"
    creds = f"{login.user}:{login.password}"
    local = _local_test_image(podman_service)
    podman_service.podman("push", "--tls-verify=false", "--creds", creds, local, image)
    auths = {login.host: (login.user, login.password)}
    with RegistryClient(insecure_hosts=insecure, auths=auths) as client:
        pushed = publish_doc(
            login.host, f"{login.host}/{repo}:v1", bundle_doc(image), client=client
        )
        assert client.pull(f"{login.host}/{repo}", "v1").digest == pushed.digest
    with (
        RegistryClient(insecure_hosts=insecure) as anonymous,
        pytest.raises(RegistryUnauthorized) as caught,
    ):
        anonymous.pull(f"{login.host}/{repo}", "v1")
    assert login.password not in str(caught.value)


def _local_test_image(podman_service: Engine) -> str:
    from tests.oci import RUN_SCRIPT

    return podman_service.image("hello-oci", RUN_SCRIPT)


def test_fixture_layouts_pull_byte_for_byte(
    registry_proxy: RegistryProxy, push_image: PushImage, repo: str, client: RegistryClient
) -> None:
    """cnab-to-oci's own config manifest and bundle.json, pushed as is, pull as is; the Docker
    fallback config manifest is read too."""
    host = registry_proxy.host
    repository = f"{host}/{repo}"
    push_image(registry_proxy.upstream, f"{repo}:installer")
    invocation = client.manifest_descriptor(repository, "installer")
    derived = FIXTURES / "cnab-to-oci" / "derived"
    raw = (derived / "e2e.bundle.json").read_bytes().rstrip(b"\n")
    for name in ("e2e.config-manifest.json", "push_test.fallback-docker-config-manifest.json"):
        if name.startswith("push_test"):
            raw = (derived / "push_test.bundle.json").read_bytes().rstrip(b"\n")
        manifest = (derived / name).read_bytes().rstrip(b"\n")
        client.push_blob(repository, raw)
        media_type = json.loads(manifest).get("mediaType", layout.OCI_MANIFEST)
        client.push_manifest(repository, layout.digest_of(manifest), manifest, media_type)
        index = layout.go_json(
            {
                "schemaVersion": 2,
                "manifests": [
                    {
                        "mediaType": media_type,
                        "digest": layout.digest_of(manifest),
                        "size": len(manifest),
                        "annotations": {"io.cnab.manifest.type": "config"},
                    },
                    {
                        "mediaType": invocation.media_type,
                        "digest": invocation.digest,
                        "size": invocation.size,
                        "annotations": {"io.cnab.manifest.type": "invocation"},
                    },
                ],
            }
        )
        digest = client.push_manifest(repository, "fixture", index, layout.OCI_INDEX)
        pulled = client.pull(repository, "fixture")
        assert (pulled.digest, pulled.index, pulled.bundle_json) == (digest, index, raw)


def test_docker_manifest_list_fallback(
    published: tuple[str, str, bytes], client: RegistryClient
) -> None:
    """cnab-to-oci falls back to a Docker manifest list when a registry refuses OCI indexes."""
    repository, digest, raw = published
    index = json.loads(client.pull(repository, digest).index)
    listed = layout.go_json({"schemaVersion": 2, "mediaType": layout.DOCKER_MANIFEST_LIST, **index})
    pushed = client.push_manifest(repository, "listed", listed, layout.DOCKER_MANIFEST_LIST)
    pulled = client.pull(repository, "listed")
    assert (pulled.digest, pulled.index, pulled.bundle_json) == (pushed, listed, raw)


@pytest.mark.parametrize("method", ["pull", "resolve"])
def test_a_proxy_page_is_quoted_bounded(
    published: tuple[str, str, bytes],
    client: RegistryClient,
    registry_proxy: RegistryProxy,
    method: str,
) -> None:
    # A load balancer in front of the registry answers with its own page, not registry JSON.
    repository, _, _ = published
    page = b"<html><body><h1>503 Service Unavailable</h1>\nNo server is available to handle this request.</body></html>"
    registry_proxy.faults.append(Fault(503, body=page))
    with pytest.raises(RegistryUnreachable) as caught:
        getattr(client, method)(repository, "v0.1.0")
    assert "No server is available to handle this request." in caught.value.message
    assert "<" not in caught.value.message

    registry_proxy.faults[:] = [Fault(503, body=b"overloaded " * 10_000)]
    with pytest.raises(RegistryUnreachable) as caught:
        getattr(client, method)(repository, "v0.1.0")
    assert "503 Service Unavailable: overloaded overloaded" in caught.value.message
    assert len(caught.value.message) < 400 and caught.value.message.endswith("...")
