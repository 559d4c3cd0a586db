"""Bulk seeding: a :class:`~bench.plan.Plan` written straight into a migrated SQLite file.

The services record a run in three write transactions (create, start, finish), far too
slow for a million runs. This module builds the very rows those calls would leave —
the same protobuf messages, ``canonical_json`` parameters, output digests and every
denormalized column (``run_count``, the run pointers, ``installed``, ``state``, the
installation's status, ``resource_counts``) — and inserts them with ``executemany``
in a few large transactions on a database that :meth:`Database.migrate` created.
:mod:`bench.seedcheck` replays a small plan through the real services and asserts that
this module's rows are identical, so drift in the services is caught.

Seeded files are cached under the temp dir, keyed by the plan and a hash of the schema
and of the code that builds rows, so reruns skip seeding.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from operator import itemgetter
from pathlib import Path
from typing import Any

from google.protobuf import json_format
from google.protobuf.struct_pb2 import Struct, Value
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import Table
from sqlalchemy.dialects import sqlite as sqlite_dialect

import porter_bundle
from bench.plan import Plan
from porter.bundle.v1.installation_pb2 import (
    INSTALLATION_STATE_DEFINED,
    INSTALLATION_STATE_INSTALLED,
    INSTALLATION_STATE_UNINSTALLED,
    Installation,
    InstallationStatus,
)
from porter.bundle.v1.run_pb2 import (
    ACTION_INSTALL,
    ACTION_INVOKE,
    ACTION_UNINSTALL,
    ACTION_UPGRADE,
    RUN_STATE_SUCCEEDED,
    Output,
    Run,
)
from porter_bundle.config import sqlite_url
from porter_bundle.ids import new_id
from porter_bundle.service.common import Clock, new_etag, timestamp, utcnow
from porter_bundle.service.installations import DEFAULT_SCHEMA_VERSION
from porter_bundle.service.runs import ACTION_NAMES, NewRun, OutputValue, canonical_json
from porter_bundle.store import (
    KIND_CREDENTIAL_SET,
    KIND_INSTALLATION,
    KIND_PARAMETER_SET,
    Database,
    Keyring,
)
from porter_bundle.store.crypto import associated_data, create_key_file, read_key_file
from porter_bundle.store.models import (
    InstallationLabelRow,
    InstallationRow,
    InstallationSetRefRow,
    OutputRow,
    ResourceCountRow,
    RunRow,
)

_TABLES: dict[str, Table] = {
    "installations": InstallationRow.__table__,  # type: ignore[attr-defined]
    "installation_labels": InstallationLabelRow.__table__,  # type: ignore[attr-defined]
    "installation_set_refs": InstallationSetRefRow.__table__,  # type: ignore[attr-defined]
    "runs": RunRow.__table__,  # type: ignore[attr-defined]
    "outputs": OutputRow.__table__,  # type: ignore[attr-defined]
    "resource_counts": ResourceCountRow.__table__,  # type: ignore[attr-defined]
}
_DIALECT = sqlite_dialect.dialect(paramstyle="qmark")
# What SQLAlchemy turns a value into for this dialect (the dialect impl of each type decorator).
_DATETIME = _TABLES["runs"].c.created_at.type.dialect_impl(_DIALECT).bind_processor(_DIALECT)
_BOOLEAN = _TABLES["outputs"].c.sensitive.type.dialect_impl(_DIALECT).bind_processor(_DIALECT)
MODIFYING_ACTIONS = frozenset({ACTION_INSTALL, ACTION_UPGRADE, ACTION_UNINSTALL})
RUNS_PER_BATCH = 20_000
INSTALLATIONS_PER_BATCH = 10_000
_VALUE_CACHE_SIZE = 400_000
KEY_SUFFIX = ".key"
"""A seeded file's key file is the file's name plus this (where the server looks by default)."""
MODIFIED_BY_SEEDING = tuple(_TABLES)
"""Tables whose secondary indexes are dropped while loading and rebuilt afterwards."""

# Source files whose change invalidates cached seeded databases.
_SRC = Path(porter_bundle.__file__).resolve().parent
_CACHE_INPUTS = (
    _SRC / "store" / "models.py",
    _SRC / "store" / "crypto.py",
    _SRC / "store" / "migrations",
    _SRC / "service" / "runs",
    _SRC / "service" / "installations.py",
    _SRC / "service" / "common.py",
    Path(__file__).resolve(),
    Path(__file__).resolve().with_name("plan.py"),
)


def db_datetime(dt: datetime) -> Any:
    """A datetime as SQLAlchemy binds it for a ``created_at``-style column on SQLite."""
    return _DATETIME(dt) if _DATETIME else dt


def _db_bool(value: bool) -> Any:
    return _BOOLEAN(value) if _BOOLEAN else value


def _insert_sql(table: Table) -> tuple[str, tuple[str, ...]]:
    """The positional INSERT of every column of ``table`` and its column order."""
    compiled = table.insert().compile(dialect=_DIALECT)
    assert compiled.positiontup is not None
    return str(compiled), tuple(compiled.positiontup)


_INSERTS = {name: _insert_sql(table) for name, table in _TABLES.items()}


def _row(table: str, values: dict[str, Any]) -> tuple[Any, ...]:
    """A positional row for ``table`` from column values (used where speed does not matter)."""
    return tuple(values[c] for c in _INSERTS[table][1])


# --- rows, built as the services build them --------------------------------------------


RunEvent = tuple[int, str, int, str, tuple[str, str, str], int]
"""(installation index, run ID, action, custom action, bundle (reference, digest, version), state)."""


@dataclass(slots=True)
class _Status:
    """An installation's server-owned status, followed run by run (``RunService._update_status``)."""

    run_id: str = ""
    action: str = ""
    run_state: int = 0
    bundle: tuple[str, str, str] = ("", "", "")
    state: int = INSTALLATION_STATE_DEFINED
    installed: bool = False
    last_succeeded: str | None = None
    install_time: Timestamp | None = None
    uninstall_time: Timestamp | None = None
    run_count: int = 0
    created_at: datetime | None = None
    updated_at: datetime | None = None

    def record(self, event: RunEvent, done: Timestamp, now: datetime) -> None:
        """Applies one run that was created, started and finished in turn."""
        run_id, action, custom_action, bundle, state = event[1:]
        self.run_id = run_id
        self.action = custom_action if action == ACTION_INVOKE else ACTION_NAMES[action]  # type: ignore[index]
        self.run_state = state
        self.bundle = bundle
        if action in MODIFYING_ACTIONS:
            self.installed = not (action == ACTION_UNINSTALL and state == RUN_STATE_SUCCEEDED)
        if state == RUN_STATE_SUCCEEDED:
            self.last_succeeded = run_id
            if action in (ACTION_INSTALL, ACTION_UPGRADE):
                self.state = INSTALLATION_STATE_INSTALLED
                self.install_time = done
            elif action == ACTION_UNINSTALL:
                self.state = INSTALLATION_STATE_UNINSTALLED
                self.uninstall_time = done
        self.run_count += 1
        self.updated_at = now

    def message(self) -> InstallationStatus:
        """The ``status`` field of the installation's document."""
        st = InstallationStatus(state=self.state)  # type: ignore[arg-type]
        if self.run_count:
            st.run_id = self.run_id
            st.action = self.action
            st.run_state = self.run_state  # type: ignore[assignment]
            st.bundle_reference, st.bundle_digest, st.bundle_version = self.bundle
        if self.last_succeeded:
            st.last_succeeded_run_id = self.last_succeeded
        if self.install_time is not None:
            st.install_time.CopyFrom(self.install_time)
        if self.uninstall_time is not None:
            st.uninstall_time.CopyFrom(self.uninstall_time)
        return st


def installation_rows(
    given: Installation, inst_id: str, status: _Status, etag: str
) -> tuple[tuple[Any, ...], list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Rows of one installation (``InstallationService.create`` then its runs' status updates)."""
    created = status.created_at
    assert created is not None
    inst = Installation()
    inst.CopyFrom(given)
    if not inst.schema_version:
        inst.schema_version = DEFAULT_SCHEMA_VERSION
    inst.id = inst_id
    inst.create_time.CopyFrom(timestamp(created))
    updated = status.updated_at or created
    inst.update_time.CopyFrom(timestamp(updated))
    inst.etag = etag
    inst.status.CopyFrom(status.message())
    last_run = status.run_id if status.run_count else None
    row = _row(
        "installations",
        {
            "id": inst_id,
            "namespace": inst.namespace,
            "name": inst.name,
            "etag": etag,
            "doc": inst.SerializeToString(),
            "created_at": db_datetime(created),
            "updated_at": db_datetime(updated),
            "state": status.state,
            "last_run_id": last_run,
            "last_succeeded_run_id": status.last_succeeded,
            "last_finished_run_id": last_run,
            "installed": _db_bool(status.installed),
            "run_count": status.run_count,
            "secret_parameters": None,  # the seeded bundles mark no parameter sensitive
        },
    )
    labels = [
        _row("installation_labels", {"installation_id": inst_id, "key": k, "value": v})
        for k, v in inst.labels.items()
    ]
    refs = [
        _row(
            "installation_set_refs",
            {"installation_id": inst_id, "kind": KIND_CREDENTIAL_SET, "set_name": n},
        )
        for n in inst.credential_sets
    ]
    refs += [
        _row(
            "installation_set_refs",
            {"installation_id": inst_id, "kind": KIND_PARAMETER_SET, "set_name": n},
        )
        for n in inst.parameter_sets
    ]
    return row, labels, refs


class RowBuilder:
    """Builds run and output rows like ``RunService.create/start/finish`` and ``_output_row``.

    Caches what repeats across runs (parameter JSON and structs, output values and
    digests): that is what makes a million runs take seconds rather than minutes.
    """

    def __init__(self, keyring: Keyring) -> None:
        self._keyring = keyring
        self._params: dict[Any, tuple[bytes, Struct, list[str]]] = {}
        self._values: dict[Any, tuple[str, str, Value]] = {}
        self._run_row = itemgetter(*_INSERTS["runs"][1])
        self._output_row = itemgetter(*_INSERTS["outputs"][1])
        self._true, self._false = _db_bool(True), _db_bool(False)

    def _parameters(self, new: NewRun) -> tuple[bytes, Struct, list[str]]:
        try:
            key: Any = (tuple(new.parameters.items()), new.sensitive_parameters)
            hash(key)
        except TypeError:  # unhashable values: key by their JSON
            key = (canonical_json(dict(new.parameters)), new.sensitive_parameters)
        cached = self._params.get(key)
        if cached is None:
            public = Struct()
            public.update(
                {k: v for k, v in new.parameters.items() if k not in new.sensitive_parameters}
            )
            sensitive = sorted(new.sensitive_parameters & new.parameters.keys())
            cached = (canonical_json(dict(new.parameters)).encode(), public, sensitive)
            self._params[key] = cached
        return cached

    def run_row(
        self,
        new: NewRun,
        run_id: str,
        inst_id: str,
        address: tuple[str, str],
        state: int,
        message: str,
        ts: Timestamp,
        created: Any,
    ) -> tuple[Any, ...]:
        """The ``runs`` row of a run created, started and finished at ``ts``."""
        params_json, public, sensitive = self._parameters(new)
        run = Run(
            id=run_id,
            installation_id=inst_id,
            namespace=address[0],
            installation=address[1],
            action=new.action,  # type: ignore[arg-type]
            custom_action=new.custom_action,
            bundle_reference=new.bundle_reference,
            bundle_digest=new.bundle_digest,
            bundle_version=new.bundle_version,
            parameters=public,
            sensitive_parameters=sensitive,
            credential_sets=new.credential_sets,
            parameter_sets=new.parameter_sets,
            state=state,  # type: ignore[arg-type]
            message=message,
            request_id=new.request_id,
            create_time=ts,
            start_time=ts,
            complete_time=ts,
        )
        row: tuple[Any, ...] = self._run_row(
            {
                "id": run_id,
                "installation_id": inst_id,
                "state": state,
                "action": new.action,
                "request_id": new.request_id or None,
                "doc": run.SerializeToString(),
                "parameters": self._keyring.encrypt(
                    params_json, associated_data("runs", [run_id], "parameters")
                ).encode(),
                "created_at": created,
                "owner": None,  # finished runs recorded without a lease (as the services do)
                "lease_expires_at": 0.0,
            }
        )
        return row

    def _value(self, value: Any) -> tuple[str, str, Value]:
        try:
            key: Any = (type(value), value)
            cached = self._values.get(key)
        except TypeError:  # unhashable: key by its JSON
            key = canonical_json(value)
            cached = self._values.get(key)
        if cached is None:
            text = canonical_json(value)
            msg = Value()
            json_format.ParseDict(value, msg)
            cached = (text, "sha256:" + hashlib.sha256(text.encode()).hexdigest(), msg)
            if len(self._values) >= _VALUE_CACHE_SIZE:
                self._values.clear()
            self._values[key] = cached
        return cached

    def output_row(self, run_id: str, out: OutputValue, ts: Timestamp) -> tuple[Any, ...]:
        """The ``outputs`` row of one output (``porter_bundle.service.runs.output_row``)."""
        text, digest, value = self._value(out.value)
        msg = Output(
            name=out.name,
            type=out.type,
            sensitive=out.sensitive,
            run_id=run_id,
            digest=digest,
            create_time=ts,
        )
        if not out.sensitive:
            msg.value.CopyFrom(value)
        row: tuple[Any, ...] = self._output_row(
            {
                "run_id": run_id,
                "name": out.name,
                "sensitive": self._true if out.sensitive else self._false,
                "value": self._keyring.encrypt(
                    text.encode(), associated_data("outputs", [run_id, out.name], "value")
                )
                if out.sensitive
                else text,
                "doc": msg.SerializeToString(),
                "written": None,  # the value renders as the bundle wrote it
                "internal": self._false,
                "expired": self._false,
            }
        )
        return row


# --- loading ---------------------------------------------------------------------------


class _Writer:
    """Runs ``executemany`` batches on its own thread: SQLite releases the GIL while it works."""

    def __init__(self, path: Path) -> None:
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        for pragma in (
            "journal_mode=OFF",
            "synchronous=OFF",
            "cache_size=-512000",
            "temp_store=MEMORY",
            "foreign_keys=OFF",
        ):
            self._conn.execute(f"PRAGMA {pragma}")
        self._queue: queue.Queue[tuple[str, list[tuple[Any, ...]]] | None] = queue.Queue(8)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._loop, name="bench-seed-writer", daemon=True)
        self._indexes = self._drop_indexes()
        self._conn.execute("BEGIN")
        self._thread.start()

    def _drop_indexes(self) -> list[str]:
        names = ",".join("?" * len(MODIFIED_BY_SEEDING))
        rows = self._conn.execute(
            f"SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL "
            f"AND tbl_name IN ({names})",
            MODIFIED_BY_SEEDING,
        ).fetchall()
        for name, _ in rows:
            self._conn.execute(f'DROP INDEX "{name}"')
        return [sql for _, sql in rows]

    def _loop(self) -> None:
        while (item := self._queue.get()) is not None:
            if self._error is not None:
                continue
            try:
                self._conn.executemany(_INSERTS[item[0]][0], item[1])
            except BaseException as exc:
                self._error = exc

    def put(self, table: str, rows: list[tuple[Any, ...]]) -> None:
        """Queues rows of ``table`` for insertion (blocks while the writer is behind)."""
        if self._error is not None:
            raise self._error
        if rows:
            self._queue.put((table, rows))

    def finish(self) -> None:
        """Waits for the queued rows, commits, rebuilds the indexes and switches to WAL."""
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            self._conn.execute("ROLLBACK")
            self._conn.close()
            raise self._error
        # Derived, as store.add_outputs keeps it: per installation and output name, the run
        # that last produced it. Runs of one installation are seeded in order, so that is the
        # highest run ID (ULIDs sort by creation).
        self._conn.execute(
            "INSERT INTO latest_outputs (installation_id, name, run_id) "
            "SELECT r.installation_id, o.name, MAX(o.run_id) FROM outputs o "
            "JOIN runs r ON r.id = o.run_id GROUP BY r.installation_id, o.name"
        )
        self._conn.execute("COMMIT")
        for sql in self._indexes:
            self._conn.execute(sql)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.close()


@dataclass
class SeedStats:
    """What seeding did and how long it took."""

    seconds: float = 0.0
    installations: int = 0
    runs: int = 0
    outputs: int = 0
    phases: dict[str, float] = field(default_factory=dict)


# Work shipped to the worker processes: each builds rows for a slice of the plan.
_worker: tuple[Plan, list[str], RowBuilder] | None = None


def _init_worker(plan: Plan, inst_ids: list[str], key_file: Path) -> None:
    global _worker
    _worker = (plan, inst_ids, RowBuilder(read_key_file(key_file)))


RunBatch = tuple[list[int], list[int], list[str], datetime]
"""Installation index, run number and run ID of each run of a batch, and the batch's time."""


def _build_runs(
    task: RunBatch,
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[RunEvent], datetime]:
    """Rows of one batch of runs, and what the installations' status needs to know of them."""
    assert _worker is not None
    plan, inst_ids, builder = _worker
    indexes, numbers, run_ids, now = task
    ts, db_now = timestamp(now), db_datetime(now)
    run_rows: list[tuple[Any, ...]] = []
    output_rows: list[tuple[Any, ...]] = []
    events: list[RunEvent] = []
    for i, k, run_id in zip(indexes, numbers, run_ids, strict=True):
        new = plan.new_run(i, k)
        outcome = plan.outcome(i, k)
        run_rows.append(
            builder.run_row(
                new,
                run_id,
                inst_ids[i],
                plan.address(i),
                outcome.state,
                outcome.message,
                ts,
                db_now,
            )
        )
        output_rows.extend(builder.output_row(run_id, o, ts) for o in outcome.outputs)
        bundle = (new.bundle_reference, new.bundle_digest, new.bundle_version)
        events.append((i, run_id, new.action, new.custom_action, bundle, outcome.state))
    return run_rows, output_rows, events, now


InstallationBatch = list[tuple[int, _Status, str]]
"""Installation index, final status and etag of each installation of a batch."""


def _build_installations(
    task: InstallationBatch,
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Rows of a batch of installations (with their labels and set references)."""
    assert _worker is not None
    plan, inst_ids, _ = _worker
    rows, labels, refs = [], [], []
    for i, status, etag in task:
        row, lab, ref = installation_rows(plan.installation(i), inst_ids[i], status, etag)
        rows.append(row)
        labels += lab
        refs += ref
    return rows, labels, refs


def seed_into(
    path: Path,
    plan: Plan,
    *,
    ids: Callable[[], str] = new_id,
    etags: Callable[[], str] = new_etag,
    clock: Clock = utcnow,
    processes: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> SeedStats:
    """Migrates a new SQLite file at ``path`` and bulk-loads ``plan`` into it.

    Secrets are encrypted with the key file the server uses by default, ``<path>.key``
    (created when missing).

    IDs are minted here like the services mint them: installations first in index
    order, then runs in the order they happen. Worker processes (one per CPU by default)
    build the rows; this process tracks each installation's status and feeds a writer
    thread. ``ids``, ``etags`` and ``clock`` are injectable so :mod:`bench.seedcheck` can
    reproduce what the real services wrote.
    """
    started = time.perf_counter()
    stats = SeedStats()
    key_file = Path(f"{path}{KEY_SUFFIX}")
    keyring = read_key_file(key_file) if key_file.exists() else create_key_file(key_file)
    store = Database(sqlite_url(path), keyring=keyring)
    store.migrate()
    store.close()
    stats.phases["migrate"] = time.perf_counter() - started

    created = clock()
    inst_ids = [ids() for _ in range(plan.installations)]
    statuses = [_Status(created_at=created) for _ in range(plan.installations)]
    t0 = time.perf_counter()
    schedule = plan.schedule()
    stats.phases["schedule"] = time.perf_counter() - t0

    def run_batches() -> Iterator[RunBatch]:
        done = [0] * plan.installations
        for start in range(0, len(schedule), RUNS_PER_BATCH):
            indexes = schedule[start : start + RUNS_PER_BATCH]
            numbers = []
            for i in indexes:
                numbers.append(done[i])
                done[i] += 1
            yield indexes, numbers, [ids() for _ in indexes], clock()

    workers = processes or max(1, min(4, os.cpu_count() or 1))
    mp = multiprocessing.get_context("spawn")
    writer = _Writer(path)
    try:
        with mp.Pool(workers, _init_worker, (plan, inst_ids, key_file)) as pool:
            t0 = time.perf_counter()
            for n, (run_rows, output_rows, events, now) in enumerate(
                pool.imap(_build_runs, run_batches())
            ):
                writer.put("runs", run_rows)
                writer.put("outputs", output_rows)
                done_ts = timestamp(now)
                for event in events:
                    statuses[event[0]].record(event, done_ts, now)
                stats.runs += len(run_rows)
                stats.outputs += len(output_rows)
                if progress is not None and n % 10 == 9:
                    progress(f"seed: {stats.runs:,} runs, {stats.outputs:,} outputs")
            stats.phases["runs"] = time.perf_counter() - t0

            t0 = time.perf_counter()
            everything = [(i, statuses[i], etags()) for i in range(plan.installations)]
            per_batch = INSTALLATIONS_PER_BATCH
            batches = [everything[s : s + per_batch] for s in range(0, len(everything), per_batch)]
            for rows, labels, refs in pool.imap(_build_installations, batches):
                writer.put("installations", rows)
                writer.put("installation_labels", labels)
                writer.put("installation_set_refs", refs)
                stats.installations += len(rows)
        per_namespace: dict[str, int] = {}
        for i in range(plan.installations):
            namespace = plan.address(i)[0]
            per_namespace[namespace] = per_namespace.get(namespace, 0) + 1
        writer.put(
            "resource_counts",
            [
                _row("resource_counts", {"kind": KIND_INSTALLATION, "namespace": ns, "count": n})
                for ns, n in sorted(per_namespace.items())
            ],
        )
        stats.phases["installations"] = time.perf_counter() - t0
    finally:
        t0 = time.perf_counter()
        writer.finish()
        stats.phases["commit+indexes"] = time.perf_counter() - t0
    stats.seconds = time.perf_counter() - started
    return stats


# --- cache -----------------------------------------------------------------------------


def cache_key(plan: Plan) -> str:
    """Digest of the plan, the schema and the row-building code."""
    h = hashlib.sha256(repr(sorted(plan.key().items())).encode())
    for source in _CACHE_INPUTS:
        files: Iterable[Path] = sorted(source.rglob("*.py")) if source.is_dir() else [source]
        for f in files:
            h.update(f.name.encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:16]


def default_cache_dir() -> Path:
    """Where seeded databases are kept between runs."""
    import tempfile

    return Path(tempfile.gettempdir()) / "porter-bundle-bench"


@dataclass(frozen=True)
class SeededDatabase:
    """A seeded SQLite file and how it came to be."""

    path: Path
    cached: bool
    stats: SeedStats | None

    @property
    def url(self) -> str:
        """Its SQLAlchemy URL."""
        return sqlite_url(self.path)


def seeded_database(
    plan: Plan,
    cache_dir: Path,
    *,
    use_cache: bool = True,
    progress: Callable[[str], None] | None = None,
) -> SeededDatabase:
    """The cached seeded file for ``plan``, seeding it first when missing (or not cached)."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    sizes = f"i{plan.installations}-r{plan.runs}"
    final = cache_dir / f"seed-{sizes}-{cache_key(plan)}.db"
    if use_cache and final.exists():
        return SeededDatabase(final, True, None)
    # Files of the same sizes under another key were built by older code: they only take space.
    for stale in cache_dir.glob(f"seed-{sizes}-*.db"):
        if stale != final:
            _remove_db(stale)
    scratch = final.with_suffix(f".{os.getpid()}.tmp")
    _remove_db(scratch)
    try:
        stats = seed_into(scratch, plan, progress=progress)
        _remove_db(final)
        Path(f"{scratch}{KEY_SUFFIX}").rename(f"{final}{KEY_SUFFIX}")
        scratch.rename(final)
    finally:
        _remove_db(scratch)
    return SeededDatabase(final, False, stats)


def _remove_db(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal", KEY_SUFFIX):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
