"""Queries of run outputs, of each output name's latest value across an installation's runs,
and the output retention that removes old values."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, bindparam, exists, select
from sqlmodel import Session

from porter_bundle.store.listing import dialect_insert
from porter_bundle.store.models import LatestOutputRow, OutputRow, RunRow, table_of
from porter_bundle.store.queries import Reader
from porter_bundle.store.secrets import (
    OUTPUT_VALUE,
    OUTPUT_WRITTEN,
    sealed_text,
    session_keyring,
)

_outputs = table_of(OutputRow)


@dataclass(frozen=True)
class LatestOutput:
    """An output name's most recent value (see :func:`list_latest_outputs`)."""

    doc: bytes
    """The Output message."""
    run_id: str
    value_json: str
    written: str | None
    """The text the bundle wrote, when it is not how ``value_json`` renders (see OutputRow)."""
    internal: bool
    """Porter marks the output internal (see OutputRow)."""


_latest_outputs = table_of(LatestOutputRow)


def add_outputs(session: Session, installation_id: str, rows: Sequence[OutputRow]) -> None:
    """Inserts a run's outputs and makes the run the latest producer of each output name.

    Sensitive values are given clear and stored encrypted.

    A pointer only moves forward (to a greater run ID), so a run finishing late never hides
    the value of a newer run.
    """
    if not rows:
        return
    keyring = session_keyring(session)
    for r in rows:
        if r.sensitive:
            key = [r.run_id, r.name]
            r.value = sealed_text(OUTPUT_VALUE.seal(keyring, key, r.value.encode()))
            if r.written is not None:
                r.written = sealed_text(OUTPUT_WRITTEN.seal(keyring, key, r.written.encode()))
    session.add_all(rows)
    session.flush()
    insert = dialect_insert(session)
    lo = _latest_outputs
    stmt = insert(lo).values(
        [{"installation_id": installation_id, "name": r.name, "run_id": r.run_id} for r in rows]
    )
    session.execute(
        stmt.on_conflict_do_update(
            index_elements=[lo.c.installation_id, lo.c.name],
            set_={"run_id": stmt.excluded.run_id},
            where=stmt.excluded.run_id > lo.c.run_id,
        )
    )


def list_output_docs(reader: Reader, run_id: str) -> list[bytes]:
    """The Output messages of a run, sorted by name."""

    def build() -> Select[Any]:
        return (
            select(_outputs.c.doc)
            .where(_outputs.c.run_id == bindparam("run"))
            .order_by(_outputs.c.name)
        )

    return [bytes(r[0]) for r in reader.rows("outputs", build, {"run": run_id})]


def list_latest_outputs(reader: Reader, installation_id: str) -> list[LatestOutput]:
    """Each output name's most recent value across an installation's runs, whatever their
    result (sensitive values in clear: for callers entitled to them); sorted by name."""

    def build() -> Select[Any]:
        lo, o = _latest_outputs, _outputs
        return (
            select(o.c.doc, o.c.value, o.c.run_id, o.c.name, o.c.written, o.c.internal)
            .select_from(lo.join(o, (o.c.run_id == lo.c.run_id) & (o.c.name == lo.c.name)))
            .where(lo.c.installation_id == bindparam("inst"))
            .order_by(lo.c.name)
        )

    rows = reader.rows("outputs.latest", build, {"inst": installation_id})
    kr = reader.keyring
    return [
        LatestOutput(
            doc=bytes(r[0]),
            run_id=str(r[2]),
            value_json=OUTPUT_VALUE.open(kr, [r[2], r[3]], r[1]).decode(),
            written=None if r[4] is None else OUTPUT_WRITTEN.open(kr, [r[2], r[3]], r[4]).decode(),
            internal=bool(r[5]),
        )
        for r in rows
    ]


def list_output_values(reader: Reader, run_id: str) -> list[tuple[str, bool, str]]:
    """(name, sensitive, value JSON) of each output of a run whose value is kept (not expired),
    sensitive values decrypted; sorted by name. Only for callers entitled to sensitive values."""

    def build() -> Select[Any]:
        o = _outputs
        return (
            select(o.c.name, o.c.sensitive, o.c.value)
            .where(o.c.run_id == bindparam("run"), o.c.expired.is_(False))
            .order_by(o.c.name)
        )

    rows = reader.rows("outputs.values", build, {"run": run_id})
    kr = reader.keyring
    return [
        (str(r[0]), bool(r[1]), OUTPUT_VALUE.open(kr, [run_id, r[0]], r[2]).decode()) for r in rows
    ]


def expire_outputs(
    session: Session, installation_id: str, keep_runs: int, expired_doc: Callable[[bytes], bytes]
) -> int:
    """Removes the values of the outputs of an installation's runs older than its ``keep_runs``
    most recent ones, in the caller's transaction; returns how many expired. A value that is
    still its name's latest (what "latest outputs" and parameter sources read) is kept.
    ``expired_doc`` rewrites an Output message as expired."""
    runs = table_of(RunRow)
    cutoff = session.execute(
        select(runs.c.id)
        .where(runs.c.installation_id == installation_id)
        .order_by(runs.c.id.desc())
        .offset(keep_runs - 1)
        .limit(1)
    ).scalar_one_or_none()
    if cutoff is None:
        return 0
    lo = _latest_outputs
    latest = exists().where(
        lo.c.installation_id == installation_id,
        lo.c.run_id == OutputRow.run_id,
        lo.c.name == OutputRow.name,
    )
    stmt = (
        select(OutputRow)
        .join(RunRow, RunRow.id == OutputRow.run_id)  # type: ignore[arg-type]
        .where(
            RunRow.installation_id == installation_id,  # type: ignore[arg-type]
            OutputRow.run_id < cutoff,
            OutputRow.expired.is_(False),  # type: ignore[attr-defined]
            ~latest,
        )
    )
    rows = list(session.execute(stmt).scalars())
    keyring = session_keyring(session)
    for row in rows:
        row.expired = True
        # Nothing of the value is left; a sensitive column stays encrypted all the same.
        row.value = (
            sealed_text(OUTPUT_VALUE.seal(keyring, [row.run_id, row.name], b""))
            if row.sensitive
            else ""
        )
        row.doc = expired_doc(row.doc)
    session.add_all(rows)
    session.flush()
    return len(rows)
