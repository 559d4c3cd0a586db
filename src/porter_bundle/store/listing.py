"""Lists and counts: the filters of a list call, pages sorted by a key, the per-namespace
counters that answer ``total_size`` without counting rows.

Queries take named bind parameters; the filter *shape* (which filters are present, how many
labels) is the query's cache key, the values are its parameters (see
:mod:`porter_bundle.store.queries`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Integer,
    Select,
    Table,
    bindparam,
    exists,
    false,
    func,
    select,
    tuple_,
)
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session

from porter_bundle.store.models import ResourceCountRow, table_of
from porter_bundle.store.queries import Reader

KIND_INSTALLATION = "installation"
KIND_CREDENTIAL_SET = "credential"
KIND_PARAMETER_SET = "parameter"
KIND_BUNDLE = "bundle"

_counts = table_of(ResourceCountRow)

Shape = tuple[bool, bool, int, int]
"""Which filters a list call has: (namespace, name, how many labels, how many visible
namespaces or -1 for all)."""


@dataclass(frozen=True)
class ListFilter:
    """Filters of a list call. ``namespace`` None means every namespace."""

    namespace: str | None = ""
    name_contains: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    visible: frozenset[str] | None = None
    """Namespaces the caller may see (authorization); None = all."""

    @property
    def counts_suffice(self) -> bool:
        """True when the per-namespace counters answer ``total_size`` without a count query."""
        return not self.name_contains and not self.labels and self.visible is None


@dataclass(frozen=True)
class PageSpec:
    """Which slice of a sorted list to read: rows after ``after`` (a sort key), minus ``skip``."""

    limit: int
    after: tuple[str, ...] | None = None
    skip: int = 0


@dataclass(frozen=True)
class Page:
    """Stored message bytes of one page, and the sort key to continue after (None on the last page)."""

    docs: list[bytes]
    next_after: tuple[str, ...] | None


def like_contains(text: str) -> str:
    """A LIKE pattern matching ``text`` anywhere ("/" escapes the wildcards)."""
    return "%" + like_escaped(text) + "%"


def like_escaped(text: str) -> str:
    """``text`` with LIKE's wildcards escaped by "/"."""
    return text.replace("/", "//").replace("%", "/%").replace("_", "/_")


def shape_of(flt: ListFilter) -> Shape:
    """The shape of a filter (see :data:`Shape`)."""
    visible = -1 if flt.visible is None else len(flt.visible)
    return (flt.namespace is not None, bool(flt.name_contains), len(flt.labels), visible)


def _filter_params(flt: ListFilter) -> dict[str, Any]:
    params: dict[str, Any] = {"ns": flt.namespace, "name_pat": like_contains(flt.name_contains)}
    for i, (key, value) in enumerate(sorted(flt.labels.items())):
        params[f"lk{i}"], params[f"lv{i}"] = key, value
    for i, namespace in enumerate(sorted(flt.visible or ())):
        params[f"vis{i}"] = namespace
    return params


def filters(
    table: Table, label_table: Table, label_fk: str, shape: Shape
) -> list[ColumnElement[bool]]:
    """The conditions of a filter of ``shape`` on a table of resources with labels."""
    has_ns, has_name, n_labels, n_visible = shape
    where: list[ColumnElement[bool]] = []
    if has_ns:
        where.append(table.c.namespace == bindparam("ns"))
    if n_visible == 0:
        where.append(false())
    elif n_visible > 0:
        where.append(table.c.namespace.in_([bindparam(f"vis{i}") for i in range(n_visible)]))
    if has_name:
        where.append(table.c.name.like(bindparam("name_pat"), escape="/"))
    for i in range(n_labels):
        lt = label_table.alias(f"l{i}")
        where.append(
            exists().where(
                lt.c[label_fk] == table.c.id,
                lt.c.key == bindparam(f"lk{i}"),
                lt.c.value == bindparam(f"lv{i}"),
            )
        )
    return where


def paged(stmt: Select[Any], spec: PageSpec) -> Select[Any]:
    """``stmt`` limited to one page (and the rows it skips), as :func:`page_params` binds."""
    if spec.skip:
        stmt = stmt.offset(bindparam("skip", type_=Integer))
    return stmt.limit(bindparam("limit", type_=Integer))


def page_params(spec: PageSpec) -> dict[str, Any]:
    """The parameters of :func:`paged`: one row more than the page, to tell whether one follows."""
    return {"skip": spec.skip, "limit": spec.limit + 1}


def page(rows: Sequence[Any], spec: PageSpec, key_len: int) -> Page:
    """The page of ``rows`` (doc, then the ``key_len`` columns of the sort key)."""
    docs = [bytes(r[0]) for r in rows[: spec.limit]]
    if len(rows) > spec.limit:
        last = rows[spec.limit - 1]
        return Page(docs, tuple(last[1 : 1 + key_len]))
    return Page(docs, None)


def list_by_address(
    reader: Reader,
    query: str,
    table: Table,
    where: Callable[[], list[ColumnElement[bool]]],
    flt: ListFilter,
    spec: PageSpec,
    extra: Mapping[str, Any],
) -> Page:
    """A page sorted by (namespace, name), continuing after ``spec.after``."""
    scoped = flt.namespace is not None

    def build() -> Select[Any]:
        stmt = select(table.c.doc, table.c.namespace, table.c.name).where(*where())
        if spec.after is not None:
            if scoped:
                stmt = stmt.where(table.c.name > bindparam("after_name"))
            else:
                after = tuple_(bindparam("after_ns"), bindparam("after_name"))
                stmt = stmt.where(tuple_(table.c.namespace, table.c.name) > after)
        return paged(stmt.order_by(table.c.namespace, table.c.name), spec)

    key = (query, shape_of(flt), spec.after is not None, bool(spec.skip))
    params = {**_filter_params(flt), **page_params(spec), **extra}
    if spec.after is not None:
        params["after_ns"], params["after_name"] = spec.after
    return page(reader.rows(key, build, params), spec, 2)


def count(
    reader: Reader,
    query: str,
    kind: str,
    table: Table,
    where: Callable[[], list[ColumnElement[bool]]],
    flt: ListFilter,
    extra: Mapping[str, Any],
) -> int:
    """How many rows of ``table`` match: from the counters of ``kind`` when they suffice."""
    if flt.counts_suffice:
        scoped = flt.namespace is not None

        def counters() -> Select[Any]:
            stmt = select(func.coalesce(func.sum(_counts.c.count), 0)).where(
                _counts.c.kind == bindparam("kind")
            )
            return stmt.where(_counts.c.namespace == bindparam("ns")) if scoped else stmt

        return int(
            reader.scalar(("counters", scoped), counters, {"kind": kind, "ns": flt.namespace})
        )

    def build() -> Select[Any]:
        return select(func.count()).select_from(table).where(*where())

    params = {**_filter_params(flt), **extra}
    return int(reader.scalar((query + ".count", shape_of(flt)), build, params))


def bump_count(session: Session, kind: str, namespace: str, delta: int) -> None:
    """Adjusts a namespace's resource counter in the caller's transaction (an upsert, race-free)."""
    insert = dialect_insert(session)
    stmt = insert(_counts).values(kind=kind, namespace=namespace, count=delta)
    session.execute(
        stmt.on_conflict_do_update(
            index_elements=[_counts.c.kind, _counts.c.namespace],
            set_={"count": _counts.c.count + delta},
        )
    )


def dialect_insert(session: Session) -> Any:
    """The session's dialect's INSERT (with ON CONFLICT clauses): PostgreSQL's or SQLite's."""
    return postgresql_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
