"""Registry failures become domain errors in one place; without a registry nothing is pulled."""

from __future__ import annotations

import pytest

from porter_bundle import errors
from porter_bundle.bundles import registry as r
from porter_bundle.service import Services
from porter_bundle.validation import BundleRef


@pytest.mark.parametrize(
    ("raised", "expected", "reason"),
    [
        (r.RegistryUnreachable, errors.Unavailable, "REGISTRY_UNAVAILABLE"),
        (r.RegistryNotFound, errors.NotFound, "BUNDLE_NOT_FOUND"),
        (r.RegistryUnauthorized, errors.Unauthenticated, "REGISTRY_UNAUTHENTICATED"),
        (r.RegistryForbidden, errors.PermissionDenied, "REGISTRY_PERMISSION_DENIED"),
        (r.RegistryBadContent, errors.FailedPrecondition, "REGISTRY_BAD_CONTENT"),
        (r.RegistryRefused, errors.FailedPrecondition, "REGISTRY_REFUSED"),
    ],
)
def test_registry_error_mapping(
    raised: type[r.RegistryError], expected: type[errors.PorterBundleError], reason: str
) -> None:
    err = r.registry_error(
        raised("reg.example.com", "the registry's words"), "reg.example.com/a:v1"
    )
    assert type(err) is expected
    assert err.reason == reason
    assert err.metadata == {"reference": "reg.example.com/a:v1", "registry": "reg.example.com"}
    assert "reg.example.com" in err.message
    assert "the registry's words" in err.message


def test_without_a_registry_nothing_is_pulled(services: Services) -> None:
    with pytest.raises(errors.Unavailable, match="no registry client"):
        services.bundles.pull("127.0.0.1:1/team/app:v1")
    with pytest.raises(errors.NotFound, match="register it with CreateBundle"):
        services.bundles.resolve(BundleRef("127.0.0.1:1/team/app", tag="v1"))


def test_registry_unreachable_from_the_service(store) -> None:
    with r.RegistryClient(insecure_hosts=frozenset({"127.0.0.1:1"})) as client:
        services = Services.create(store, registry=client)
        with pytest.raises(errors.Unavailable, match=r"127\.0\.0\.1:1"):
            services.bundles.resolve(BundleRef("127.0.0.1:1/team/app", digest="sha256:" + "a" * 64))
        with pytest.raises(errors.Unavailable, match=r"127\.0\.0\.1:1"):
            services.bundles.resolve(BundleRef("127.0.0.1:1/team/app", version="1.0.0"))


def test_docker_hub_credentials_by_docker_config_name() -> None:
    auths = {"index.docker.io/v1": ("me", "pw")}
    with r.RegistryClient(auths=auths) as client:
        assert client._credentials("docker.io") == ("me", "pw")
        assert client._credentials("ghcr.io") is None
