"""Queries of run logs: a run's combined stdout/stderr, stored as chunks at byte offsets."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Integer, Select, bindparam, delete, func, select
from sqlmodel import Session

from porter_bundle.store.models import RunLogChunkRow, table_of
from porter_bundle.store.queries import Reader

_run_logs = table_of(RunLogChunkRow)


def append_run_log(session: Session, run_id: str, chunk: bytes) -> int:
    """Appends a chunk to a run's log; returns the log's new length."""
    end = session.execute(
        select(
            func.coalesce(func.max(_run_logs.c.offset + func.length(_run_logs.c.content)), 0)
        ).where(_run_logs.c.run_id == run_id)
    ).scalar_one()
    session.execute(_run_logs.insert().values(run_id=run_id, offset=int(end), content=chunk))
    return int(end) + len(chunk)


def replace_run_log(session: Session, run_id: str, content: bytes) -> None:
    """Replaces every chunk of a run's log with ``content``."""
    session.execute(delete(_run_logs).where(_run_logs.c.run_id == run_id))
    if content:
        session.execute(_run_logs.insert().values(run_id=run_id, offset=0, content=content))


def get_run_log(reader: Reader, run_id: str, start: int = 0) -> bytes:
    """A run's stored log from byte ``start`` (empty when nothing was written)."""

    def build() -> Select[Any]:
        return (
            select(_run_logs.c.offset, _run_logs.c.content)
            .where(_run_logs.c.run_id == bindparam("run"))
            .order_by(_run_logs.c.offset)
        )

    data = b""
    for offset, content in reader.rows("run.log", build, {"run": run_id}):
        chunk = bytes(content)
        if offset + len(chunk) > start:
            data += chunk[max(0, start - offset) :]
    return data


def read_run_log(reader: Reader, run_id: str, start: int, max_chunks: int) -> bytes:
    """A run's stored log from byte ``start``, at most ``max_chunks`` stored chunks of it.

    Both conditions are ranges of the primary key (run_id, offset): the chunk holding
    ``start`` and those after it, so a follower catching up never rereads the whole log.
    """
    c = _run_logs

    def build() -> Select[Any]:
        first = (
            select(func.coalesce(func.max(c.c.offset), 0))
            .where(c.c.run_id == bindparam("run"), c.c.offset <= bindparam("start"))
            .scalar_subquery()
        )
        return (
            select(c.c.offset, c.c.content)
            .where(c.c.run_id == bindparam("run"), c.c.offset >= first)
            .order_by(c.c.offset)
            .limit(bindparam("limit", type_=Integer))
        )

    parts: list[bytes] = []
    params = {"run": run_id, "start": start, "limit": max_chunks}
    for offset, content in reader.rows("run.log.from", build, params):
        chunk = bytes(content)
        if offset + len(chunk) > start:
            parts.append(chunk[max(0, start - offset) :])
    return b"".join(parts)


def get_run_log_length(reader: Reader, run_id: str) -> int:
    """How many bytes a run's stored log holds (its last chunk's end)."""

    def build() -> Select[Any]:
        c = _run_logs
        return (
            select(c.c.offset + func.length(c.c.content))
            .where(c.c.run_id == bindparam("run"))
            .order_by(c.c.offset.desc())
            .limit(1)
        )

    return int(reader.scalar("run.log.length", build, {"run": run_id}) or 0)
