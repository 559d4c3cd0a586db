"""Asserts that bulk-seeded rows are exactly what the real services write.

A small plan is played twice: once through ``InstallationService.create`` and
``RunService.create/start/finish`` on one database, once through
:func:`bench.seed.seed_into` on another, with the same clock and the IDs the services
minted. Every row of every table must then be equal (etags aside, which are random;
documents compared in protobuf's deterministic encoding, since map entries are written
in an order that differs between processes).
Any drift between the services and the seeder — a new column, a changed document, a
denormalized field the seeder forgets — fails the benchmark before it measures anything.
"""

from __future__ import annotations

import sqlite3
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from google.protobuf.message import Message

from bench.plan import Plan
from bench.seed import KEY_SUFFIX, seed_into
from porter.bundle.v1.installation_pb2 import Installation
from porter.bundle.v1.run_pb2 import Output, Run
from porter_bundle.config import sqlite_url
from porter_bundle.service.installations import InstallationService
from porter_bundle.service.runs import RunService
from porter_bundle.store import SECRET_COLUMNS, Database
from porter_bundle.store.crypto import (
    associated_data,
    create_key_file,
    is_encrypted,
    read_key_file,
)

CHECK_PLAN = Plan(installations=60, runs=400, namespaces=3, heavy_runs=40)
"""Small enough to replay through the services in about a second; hits every plan rule."""
_FIXED_NOW = datetime(2026, 11, 22, 4, 13, 19, 722561, tzinfo=UTC)


_DOCS: dict[str, type[Message]] = {"installations": Installation, "runs": Run, "outputs": Output}

NOT_SEEDED = frozenset({"claims", "claim_results"})
"""Tables the seeder leaves empty on purpose: the CNAB claims of runs and their results (one
claim with the whole bundle.json and three results a run) would multiply the seeded file and
its seeding time, and no seeded benchmark reads them (ListClaims is not measured). The check
asserts the seeder writes none; everything else must be identical."""


class SeedDrift(AssertionError):
    """The bulk seeder no longer writes what the services write."""


def _fixed_clock() -> datetime:
    return _FIXED_NOW


def _through_services(path: Path, plan: Plan) -> None:
    store = Database(sqlite_url(path), keyring=create_key_file(Path(f"{path}{KEY_SUFFIX}")))
    store.migrate()
    installations = InstallationService(store, clock=_fixed_clock)
    runs = RunService(store, clock=_fixed_clock)
    for i in range(plan.installations):
        installations.create(plan.installation(i))
    done = [0] * plan.installations
    for i in plan.schedule():
        k = done[i]
        done[i] += 1
        namespace, name = plan.address(i)
        run, fresh = runs.create(namespace, name, plan.new_run(i, k))
        assert fresh
        runs.start(run.id)
        outcome = plan.outcome(i, k)
        runs.finish(run.id, outcome.state, outcome.message, outcome.outputs)
    store.close()


def _minted_ids(path: Path) -> Iterator[str]:
    """The services' IDs in minting order: installations first, then runs (ULIDs sort by time)."""
    with sqlite3.connect(path) as conn:
        inst = [r[0] for r in conn.execute("SELECT id FROM installations ORDER BY id")]
        runs = [r[0] for r in conn.execute("SELECT id FROM runs ORDER BY id")]
    return iter(inst + runs)


def _table_rows(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, sorted, with etags blanked (they are random by design) and
    secrets decrypted (their nonces are random by design)."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    keyring = read_key_file(Path(f"{path}{KEY_SUFFIX}"))
    with sqlite3.connect(path) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
            )
        ]
        for table in tables:
            cur = conn.execute(f'SELECT * FROM "{table}"')
            cols = [d[0] for d in cur.description]
            rows = []
            for raw in cur.fetchall():
                row = dict(zip(cols, raw, strict=True))
                if table in _DOCS:
                    # Map fields (labels, Struct) serialize in a per-process order: compare the
                    # deterministic encoding, which is the same bytes up to that order.
                    doc = _DOCS[table].FromString(row["doc"])
                    if table == "installations":
                        row["etag"] = ""
                        doc.etag = ""  # type: ignore[attr-defined]
                    row["doc"] = doc.SerializeToString(deterministic=True)
                for col in SECRET_COLUMNS:
                    if (
                        col.table.name == table
                        and row[col.column] is not None  # a nullable secret column left empty
                        and (table != "outputs" or row["sensitive"])
                    ):
                        key = [row[c] for c in col.primary_key]
                        ad = associated_data(table, key, col.column)
                        if not is_encrypted(row[col.column]):
                            raise SeedDrift(f"{col.name} of {key} is stored in clear")
                        row[col.column] = keyring.decrypt(row[col.column], ad)
                rows.append(tuple(sorted(row.items())))
            out[table] = sorted(rows, key=repr)
    return out


def _describe(row: tuple[Any, ...]) -> str:
    return ", ".join(f"{k}={v!r}"[:120] for k, v in row)


def check_seeder(plan: Plan = CHECK_PLAN) -> dict[str, int]:
    """Raises :class:`SeedDrift` unless the seeder reproduces the services; returns row counts."""
    with tempfile.TemporaryDirectory(prefix="porter-bundle-seedcheck-") as tmp:
        real, bulk = Path(tmp) / "services.db", Path(tmp) / "bulk.db"
        _through_services(real, plan)
        ids = _minted_ids(real)
        seed_into(bulk, plan, ids=lambda: next(ids), clock=_fixed_clock)
        if next(ids, None) is not None:
            raise SeedDrift("the seeder minted fewer IDs than the services did")
        want, got = _table_rows(real), _table_rows(bulk)
    for table in NOT_SEEDED:
        if got.pop(table, None):
            raise SeedDrift(f"the seeder wrote {table}: take it out of NOT_SEEDED")
        want.pop(table, None)
    if sorted(want) != sorted(got):
        raise SeedDrift(f"tables differ: services {sorted(want)}, seeder {sorted(got)}")
    for table, rows in want.items():
        if len(rows) != len(got[table]):
            raise SeedDrift(
                f"{table}: services wrote {len(rows)} rows, the seeder {len(got[table])}"
            )
        for a, b in zip(rows, got[table], strict=True):
            if a != b:
                diff = [
                    f"{ka}: services {va!r:.200} != seeder {vb!r:.200}"
                    for (ka, va), (_, vb) in zip(a, b, strict=True)
                    if va != vb
                ]
                raise SeedDrift(
                    f"{table}: first differing row ({_describe(a)}):\n  " + "\n  ".join(diff)
                )
    for table in ("installations", "runs", "outputs", "installation_labels", "resource_counts"):
        if not want.get(table):
            raise SeedDrift(f"the check plan wrote no {table}: it proves nothing")
    return {table: len(rows) for table, rows in want.items()}
