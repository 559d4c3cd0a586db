"""Queries of runs: rows, the run a request created, the active and the latest runs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Select, bindparam, or_, select, text, update
from sqlmodel import Session

from porter_bundle.store.errors import flush_new
from porter_bundle.store.listing import Page, PageSpec, page, page_params, paged
from porter_bundle.store.models import ACTIVE_RUN_PREDICATE, InstallationRow, RunRow, table_of
from porter_bundle.store.queries import Reader
from porter_bundle.store.secrets import RUN_PARAMETERS, sealed, session_keyring

_installations = table_of(InstallationRow)
_runs = table_of(RunRow)


def add_run(session: Session, row: RunRow) -> None:
    """Inserts a run (``row.parameters`` given clear, stored encrypted); :class:`DuplicateKey`
    when its request ID was used on the installation."""
    row.parameters = sealed(RUN_PARAMETERS.seal(session_keyring(session), [row.id], row.parameters))
    flush_new(session, row)
    session.execute(
        update(_installations)
        .where(_installations.c.id == row.installation_id)
        .values(run_count=_installations.c.run_count + 1)
    )


def get_run_doc(reader: Reader, installation_id: str, run_id: str) -> bytes | None:
    """The stored Run message, or None."""

    def build() -> Select[Any]:
        return select(_runs.c.doc).where(
            _runs.c.id == bindparam("run"), _runs.c.installation_id == bindparam("inst")
        )

    found = reader.scalar("run.doc", build, {"run": run_id, "inst": installation_id})
    return None if found is None else bytes(found)


def get_run_by_request(session: Session, installation_id: str, request_id: str) -> RunRow | None:
    """The run created for a client's request ID, or None."""
    return session.execute(
        select(RunRow).where(
            RunRow.installation_id == installation_id,  # type: ignore[arg-type]
            RunRow.request_id == request_id,  # type: ignore[arg-type]
        )
    ).scalar_one_or_none()


def list_runs(reader: Reader, installation_id: str, spec: PageSpec) -> Page:
    """A page of Run messages, newest first."""

    def build() -> Select[Any]:
        stmt = select(_runs.c.doc, _runs.c.id).where(_runs.c.installation_id == bindparam("inst"))
        if spec.after is not None:
            stmt = stmt.where(_runs.c.id < bindparam("after"))
        return paged(stmt.order_by(_runs.c.id.desc()), spec)

    params = {
        "inst": installation_id,
        "after": spec.after[0] if spec.after else None,
        **page_params(spec),
    }
    return page(
        reader.rows(("runs", spec.after is not None, bool(spec.skip)), build, params), spec, 1
    )


def active_run(session: Session, installation_id: str) -> RunRow | None:
    """The installation's run that is still PENDING or RUNNING, if any."""
    stmt = (
        select(RunRow)
        .where(RunRow.installation_id == installation_id, text(ACTIVE_RUN_PREDICATE))  # type: ignore[arg-type]
        .limit(1)
    )
    return session.execute(stmt).scalar_one_or_none()


def active_run_rows(session: Session) -> list[RunRow]:
    """Every run still PENDING or RUNNING, in the caller's transaction."""
    stmt = select(RunRow).where(text(ACTIVE_RUN_PREDICATE)).order_by(RunRow.id)
    return list(session.execute(stmt).scalars())


def get_run_doc_by_request(reader: Reader, installation_id: str, request_id: str) -> bytes | None:
    """The Run message an earlier request with this ID created, or None."""

    def build() -> Select[Any]:
        return select(_runs.c.doc).where(
            _runs.c.installation_id == bindparam("inst"), _runs.c.request_id == bindparam("req")
        )

    found = reader.scalar("run.by_request", build, {"inst": installation_id, "req": request_id})
    return None if found is None else bytes(found)


def active_run_docs(reader: Reader) -> list[bytes]:
    """The Run messages of every run still PENDING or RUNNING."""

    def build() -> Select[Any]:
        return select(_runs.c.doc).where(text(ACTIVE_RUN_PREDICATE)).order_by(_runs.c.id)

    return [bytes(r[0]) for r in reader.rows("runs.active", build, {})]


def get_run_parameters(reader: Reader, run_id: str) -> bytes | None:
    """Every parameter value a run used (JSON), or None when there is no such run."""

    def build() -> Select[Any]:
        return select(_runs.c.parameters).where(_runs.c.id == bindparam("run"))

    found = reader.scalar("run.parameters", build, {"run": run_id})
    return None if found is None else RUN_PARAMETERS.open(reader.keyring, [run_id], found)


def get_run_doc_by_id(reader: Reader, run_id: str) -> bytes | None:
    """The stored Run message of any installation's run (run IDs are unique), or None."""

    def build() -> Select[Any]:
        return select(_runs.c.doc).where(_runs.c.id == bindparam("run"))

    found = reader.scalar("run.doc.by_id", build, {"run": run_id})
    return None if found is None else bytes(found)


def get_latest_run_doc(reader: Reader, installation_id: str) -> tuple[bool, bytes | None]:
    """(whether the installation exists, its most recently created Run message or None)."""

    def build() -> Select[Any]:
        i = _installations
        return (
            select(i.c.id, _runs.c.doc)
            .select_from(i.outerjoin(_runs, _runs.c.id == i.c.last_run_id))
            .where(i.c.id == bindparam("inst"))
        )

    row = reader.first("run.latest", build, {"inst": installation_id})
    if row is None:
        return False, None
    return True, None if row[1] is None else bytes(row[1])


def get_run_state(reader: Reader, installation_id: str, run_id: str) -> int | None:
    """A run's state, or None when the installation has no such run."""

    def build() -> Select[Any]:
        return select(_runs.c.state).where(
            _runs.c.id == bindparam("run"), _runs.c.installation_id == bindparam("inst")
        )

    found = reader.scalar("run.state", build, {"run": run_id, "inst": installation_id})
    return None if found is None else int(found)


def count_runs(reader: Reader, installation_id: str) -> int:
    """How many runs an installation has (kept on the installation row)."""

    def build() -> Select[Any]:
        return select(_installations.c.run_count).where(_installations.c.id == bindparam("inst"))

    return int(reader.scalar("runs.count", build, {"inst": installation_id}) or 0)


def get_last_succeeded_run(
    reader: Reader, installation_id: str, actions: Sequence[int], succeeded_state: int
) -> tuple[bytes, bytes] | None:
    """(Run message, every parameter value it used) of the installation's most recent run with
    one of ``actions`` in ``succeeded_state``, or None (what desired-state apply compares with)."""

    def build() -> Select[Any]:
        return (
            select(_runs.c.doc, _runs.c.parameters, _runs.c.id)
            .where(
                _runs.c.installation_id == bindparam("inst"),
                _runs.c.state == bindparam("state"),
                or_(*(_runs.c.action == bindparam(f"action{i}") for i in range(len(actions)))),
            )
            .order_by(_runs.c.id.desc())
            .limit(1)
        )

    row = reader.first(
        ("run.last_succeeded", len(actions)),
        build,
        {
            "inst": installation_id,
            "state": succeeded_state,
            **{f"action{i}": a for i, a in enumerate(actions)},
        },
    )
    if row is None:
        return None
    return bytes(row[0]), RUN_PARAMETERS.open(reader.keyring, [row[2]], row[1])
