"""Queries of run outputs, and of each output name's latest value across an installation's runs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, bindparam, select
from sqlmodel import Session

from porter_bundle.store.listing import dialect_insert
from porter_bundle.store.models import LatestOutputRow, OutputRow, table_of
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
    """(name, sensitive, value JSON) of each output of a run, sensitive values decrypted;
    sorted by name. Only for callers entitled to sensitive values."""

    def build() -> Select[Any]:
        o = _outputs
        return (
            select(o.c.name, o.c.sensitive, o.c.value)
            .where(o.c.run_id == bindparam("run"))
            .order_by(o.c.name)
        )

    rows = reader.rows("outputs.values", build, {"run": run_id})
    kr = reader.keyring
    return [
        (str(r[0]), bool(r[1]), OUTPUT_VALUE.open(kr, [run_id, r[0]], r[2]).decode()) for r in rows
    ]
