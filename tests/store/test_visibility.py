"""ListFilter.visible: lists over every namespace limited to a set of namespaces, in SQL."""

from __future__ import annotations

from porter.bundle.v1.value_set_pb2 import CredentialSet, NamedValueSource, ValueSource
from porter_bundle import store as queries
from porter_bundle.store import ListFilter, PageSpec
from tests.auth.conftest import installation


def _fill(services) -> None:
    for namespace in ("a", "b", "c", ""):
        for i in range(2):
            services.installations.create(installation(namespace, f"web-{i}"))
            services.credential_sets.create(
                CredentialSet(
                    namespace=namespace,
                    name=f"creds-{i}",
                    credentials=[NamedValueSource(name="x", source=ValueSource(env="HOME"))],
                )
            )


def _page(services, **kwargs):
    return services.installations.list(
        namespace="", all_namespaces=True, name="", labels={}, page_token="", skip=0, **kwargs
    )


def test_visible_namespaces_only(store, services):
    _fill(services)
    page = _page(services, page_size=100, visible=frozenset({"a", ""}))
    assert page.total_size == 4 and len(page.docs) == 4
    assert _page(services, page_size=100, visible=frozenset()).total_size == 0
    assert _page(services, page_size=100, visible=None).total_size == 8
    sets = services.credential_sets.list(
        namespace="",
        all_namespaces=True,
        name="creds-1",
        labels={},
        page_size=100,
        page_token="",
        skip=0,
        visible=frozenset({"b", "c"}),
    )
    assert sets.total_size == 2


def test_visible_paging_continues_inside_the_set(store, services):
    _fill(services)
    seen, token = [], ""
    while True:
        page = services.installations.list(
            namespace="",
            all_namespaces=True,
            name="",
            labels={},
            page_size=1,
            page_token=token,
            skip=0,
            visible=frozenset({"b", "c"}),
        )
        seen += page.docs
        assert page.total_size == 4
        token = page.next_page_token
        if not token:
            break
    assert len(seen) == 4


def test_store_filter_shape(store):
    with store.read() as conn:
        flt = ListFilter(None, "", {}, frozenset({"x"}))
        assert not flt.counts_suffice
        assert queries.list_installations(conn, flt, PageSpec(limit=10)).docs == []
        assert queries.count_installations(conn, flt) == 0
