"""Runs and their outputs: recorded here, by the executor and by tests, never by SQL elsewhere.

A run moves PENDING -> RUNNING -> SUCCEEDED | FAILED | CANCELED. Finishing a run
writes its state, message, outputs and the installation's status in one
transaction, following Porter: a successful install/upgrade marks the installation
installed, a successful uninstall marks it uninstalled, custom actions leave it alone.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import json_format
from google.protobuf.struct_pb2 import Struct, Value

from porter.bundle.v1.installation_pb2 import (
    INSTALLATION_STATE_INSTALLED,
    INSTALLATION_STATE_UNINSTALLED,
    Installation,
)
from porter.bundle.v1.run_pb2 import (
    ACTION_INSTALL,
    ACTION_INVOKE,
    ACTION_UNINSTALL,
    ACTION_UPGRADE,
    RUN_STATE_CANCELED,
    RUN_STATE_FAILED,
    RUN_STATE_PENDING,
    RUN_STATE_RUNNING,
    RUN_STATE_SUCCEEDED,
    Output,
    Run,
)
from porter_bundle import store
from porter_bundle.errors import Aborted, FailedPrecondition, InvalidArgument, NotFound, Violations
from porter_bundle.ids import is_id, new_id
from porter_bundle.service.common import Clock, display_address, new_etag, timestamp, utcnow
from porter_bundle.service.events import RunEvents
from porter_bundle.service.installations import installation_not_found
from porter_bundle.service.paging import PageResult, fingerprint, finish_page, parse_page_request
from porter_bundle.store import Database, DuplicateKey, InstallationRow, OutputRow, RunRow
from porter_bundle.validation import check_address

LATEST = "latest"
ACTIVE_STATES = frozenset({RUN_STATE_PENDING, RUN_STATE_RUNNING})
assert {1, 2} == ACTIVE_STATES  # store.models.ACTIVE_RUN_PREDICATE spells these out for its index
FINAL_STATES = frozenset({RUN_STATE_SUCCEEDED, RUN_STATE_FAILED, RUN_STATE_CANCELED})
MODIFYING_ACTIONS = frozenset({ACTION_INSTALL, ACTION_UPGRADE, ACTION_UNINSTALL})
ACTION_NAMES = {
    ACTION_INSTALL: "install",
    ACTION_UPGRADE: "upgrade",
    ACTION_UNINSTALL: "uninstall",
}


@dataclass(frozen=True)
class NewRun:
    """What the caller decided a run should do (after resolving bundle, sets and parameters)."""

    action: int
    custom_action: str = ""
    bundle_reference: str = ""
    bundle_digest: str = ""
    bundle_version: str = ""
    parameters: Mapping[str, Any] = field(default_factory=dict)
    sensitive_parameters: frozenset[str] = frozenset()
    credential_sets: Sequence[str] = ()
    parameter_sets: Sequence[str] = ()
    request_id: str = ""
    invocation_image: str = ""
    invocation_image_digest: str = ""


@dataclass(frozen=True)
class OutputValue:
    """One output a finished run produced (``value`` is any JSON value)."""

    name: str
    value: Any
    type: str = ""
    sensitive: bool = False


@dataclass(frozen=True)
class ResolvedOutputs:
    """Outputs of one run, and which run "latest" resolved to."""

    run_id: str
    run_state: int
    docs: list[bytes]


def action_name(run: Run) -> str:
    """The CNAB action name of a run ("install", ..., or the custom action)."""
    return run.custom_action if run.action == ACTION_INVOKE else ACTION_NAMES.get(run.action, "")


def canonical_json(value: Any) -> str:
    """Compact JSON with sorted keys: stable text for digests."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class RunService:
    """Records runs and outputs and answers queries about them."""

    def __init__(
        self, db: Database, *, clock: Clock = utcnow, events: RunEvents | None = None
    ) -> None:
        self._store = db
        self._clock = clock
        self.events = events or RunEvents()
        """Where committed state changes and log appends are published (for live streams)."""

    # --- writes (the executor's side) ---------------------------------------------

    def create(self, namespace: str, name: str, new: NewRun) -> tuple[Run, bool]:
        """Records a PENDING run; returns it and whether it is new (False: same request_id seen before)."""
        check_address(namespace, name)
        _check_new_run(new)
        now = self._clock()
        with self._store.write() as s:
            inst_row = store.get_installation(s, namespace, name, lock=True)
            if inst_row is None:
                raise installation_not_found(namespace, name)
            if new.request_id:
                existing = store.get_run_by_request(s, inst_row.id, new.request_id)
                if existing is not None:
                    return Run.FromString(existing.doc), False
            active = store.active_run(s, inst_row.id)
            if active is not None:
                raise Aborted(
                    f"installation {display_address(namespace, name)} has an active run {active.id}; "
                    "wait for it to finish or cancel it",
                    reason="RUN_IN_PROGRESS",
                    metadata={"namespace": namespace, "name": name, "run_id": active.id},
                )
            run = Run(
                id=new_id(),
                installation_id=inst_row.id,
                namespace=namespace,
                installation=name,
                action=new.action,  # type: ignore[arg-type]
                custom_action=new.custom_action,
                bundle_reference=new.bundle_reference,
                bundle_digest=new.bundle_digest,
                bundle_version=new.bundle_version,
                sensitive_parameters=sorted(new.sensitive_parameters & new.parameters.keys()),
                credential_sets=list(new.credential_sets),
                parameter_sets=list(new.parameter_sets),
                state=RUN_STATE_PENDING,
                request_id=new.request_id,
                invocation_image=new.invocation_image,
                invocation_image_digest=new.invocation_image_digest,
            )
            public = {k: v for k, v in new.parameters.items() if k not in new.sensitive_parameters}
            run.parameters.CopyFrom(_struct(public))
            run.create_time.CopyFrom(timestamp(now))
            row = RunRow(
                id=run.id,
                installation_id=inst_row.id,
                state=run.state,
                action=run.action,
                request_id=new.request_id or None,
                doc=run.SerializeToString(),
                parameters=canonical_json(dict(new.parameters)).encode(),
                created_at=now,
            )
            try:
                store.add_run(s, row)
            except DuplicateKey:
                raise FailedPrecondition(
                    "a run with this request_id was created concurrently; retry to get it",
                    reason="REQUEST_IN_FLIGHT",
                ) from None
            self._update_status(s, inst_row, run)
        self.events.run_changed(run)
        return run, True

    def start(self, run_id: str) -> Run | None:
        """Marks a PENDING run RUNNING; None when it is no longer pending (canceled meanwhile)."""
        with self._store.write() as s:
            row = self._load(s, run_id)
            run = Run.FromString(row.doc)
            if run.state != RUN_STATE_PENDING:
                return None
            run.state = RUN_STATE_RUNNING
            run.start_time.CopyFrom(timestamp(self._clock()))
            self._save(s, row, run)
            inst_row = s.get(InstallationRow, row.installation_id)
            assert inst_row is not None
            self._update_status(s, inst_row, run)
        self.events.run_changed(run)
        return run

    def cancel_pending(self, run_id: str, message: str) -> Run | None:
        """Ends a run that has not started yet as CANCELED; None when it already started or ended."""
        with self._store.write() as s:
            row = self._load(s, run_id)
            if row.state != RUN_STATE_PENDING:
                return None
        try:
            return self.finish(run_id, RUN_STATE_CANCELED, message, only_if_state=RUN_STATE_PENDING)
        except FailedPrecondition:
            return None

    def active(self) -> list[Run]:
        """Every run still PENDING or RUNNING."""
        with self._store.read() as conn:
            return [Run.FromString(doc) for doc in store.active_run_docs(conn)]

    def find(self, namespace: str, name: str, run_id: str) -> Run:
        """A run of an installation by ID (no alias); NOT_FOUND when missing."""
        return self.get(namespace, name, run_id)

    def append_log(self, run_id: str, chunk: bytes) -> int:
        """Appends container output to a run's log; returns the new log length."""
        with self._store.write() as s:
            end = store.append_run_log(s, run_id, chunk)
        self.events.log_appended(run_id, end - len(chunk), chunk)
        return end

    def by_request(self, namespace: str, name: str, request_id: str) -> Run | None:
        """The run an earlier request with this ID created, or None."""
        with self._store.read() as conn:
            pointers = store.get_installation_pointers(conn, namespace, name)
            if pointers is None:
                raise installation_not_found(namespace, name)
            doc = store.get_run_doc_by_request(conn, pointers[0], request_id)
        return None if doc is None else Run.FromString(doc)

    def replace_log(self, run_id: str, content: bytes) -> None:
        """Replaces a run's stored log with the complete one (after re-attaching to its container)."""
        with self._store.write() as s:
            store.replace_run_log(s, run_id, content)
        self.events.log_appended(run_id, 0, None)

    def logs(self, namespace: str, name: str, run_id: str) -> tuple[Run, bytes]:
        """A run (``run_id`` may be "latest") and its stored log."""
        run = self.get(namespace, name, run_id)
        with self._store.read() as conn:
            return run, store.get_run_log(conn, run.id)

    def finish(
        self,
        run_id: str,
        state: int,
        message: str = "",
        outputs: Sequence[OutputValue] = (),
        *,
        only_if_state: int | None = None,
        image_digest: str = "",
    ) -> Run:
        """Ends an active run with its outputs and updates the installation, all in one
        transaction. ``image_digest``: the digest of the image the engine ran, recorded
        when the run pinned none."""
        if state not in FINAL_STATES:
            raise InvalidArgument(f"{state} is not a final run state", reason="RUN_STATE_NOT_FINAL")
        now = self._clock()
        with self._store.write() as s:
            row = self._load(s, run_id)
            run = Run.FromString(row.doc)
            if run.state not in ACTIVE_STATES or (
                only_if_state is not None and run.state != only_if_state
            ):
                raise FailedPrecondition(
                    f"run {run_id} is already finished",
                    reason="RUN_FINISHED",
                    metadata={"run_id": run_id},
                )
            run.state = state  # type: ignore[assignment]
            run.message = message
            if image_digest and not run.invocation_image_digest:
                run.invocation_image_digest = image_digest
            run.complete_time.CopyFrom(timestamp(now))
            self._save(s, row, run)
            store.add_outputs(s, row.installation_id, [_output_row(run, o, now) for o in outputs])
            inst_row = s.get(InstallationRow, row.installation_id)
            assert inst_row is not None  # runs are deleted with their installation
            self._update_status(s, inst_row, run, finished=True)
        self.events.run_changed(run)
        return run

    # --- reads -------------------------------------------------------------------

    def list(
        self, namespace: str, name: str, *, page_size: int, page_token: str, skip: int
    ) -> PageResult:
        """A page of serialized Run messages, newest first."""
        check_address(namespace, name)
        req = parse_page_request(
            page_size,
            page_token,
            skip,
            filters_fingerprint=fingerprint("runs", namespace, name),
            key_length=1,
        )
        with self._store.read() as conn:
            pointers = store.get_installation_pointers(conn, namespace, name)
            if pointers is None:
                raise installation_not_found(namespace, name)
            installation_id = pointers[0]
            page = store.list_runs(conn, installation_id, req.spec)
            return finish_page(
                req, page, lambda: store.count_runs(conn, installation_id), carry_total=False
            )

    def get(self, namespace: str, name: str, run_id: str) -> Run:
        """One run; ``run_id`` may be "latest" (the most recent SUCCEEDED run)."""
        check_address(namespace, name)
        with self._store.read() as conn:
            installation_id, resolved = self._resolve(
                conn, namespace, name, run_id, any_result=False
            )
            doc = store.get_run_doc(conn, installation_id, resolved)
        if doc is None:
            raise _run_not_found(namespace, name, run_id)
        return Run.FromString(doc)

    def outputs(
        self, namespace: str, name: str, run_id: str, *, any_result: bool
    ) -> ResolvedOutputs:
        """Outputs of a run or of the "latest" alias, sorted by name."""
        check_address(namespace, name)
        with self._store.read() as conn:
            installation_id, resolved = self._resolve(
                conn, namespace, name, run_id or LATEST, any_result=any_result
            )
            state = store.get_run_state(conn, installation_id, resolved)
            if state is None:
                raise _run_not_found(namespace, name, resolved)
            return ResolvedOutputs(resolved, state, store.list_output_docs(conn, resolved))

    # --- reads for live streams (service.streams) -----------------------------------

    def locate(self, namespace: str, name: str, run_id: str) -> Run:
        """A run by address and ID (or "latest"), or by its ID alone when ``name`` is empty.

        Run IDs are ULIDs, unique across installations, so the ID alone finds the run;
        ``namespace`` must then be empty too (a namespace without a name addresses nothing).
        """
        if name:
            return self.get(namespace, name, run_id)
        v = Violations()
        if namespace:
            v.add("name", "is required when namespace is set")
        if not is_id(run_id):
            v.add("run_id", 'must be a run ID (a ULID); with name set it may be "latest"')
        v.raise_if_any()
        run = self.current(run_id.upper())
        if run is None:
            raise run_id_not_found(run_id.upper())
        return run

    def current(self, run_id: str) -> Run | None:
        """A run as stored now, or None when it is gone (its installation was deleted)."""
        with self._store.read() as conn:
            doc = store.get_run_doc_by_id(conn, run_id)
        return None if doc is None else Run.FromString(doc)

    def installation_id(self, namespace: str, name: str) -> str:
        """The ID of an installation; NOT_FOUND when it does not exist."""
        check_address(namespace, name)
        with self._store.read() as conn:
            pointers = store.get_installation_pointers(conn, namespace, name)
        if pointers is None:
            raise installation_not_found(namespace, name)
        return pointers[0]

    def latest_run(self, installation_id: str) -> tuple[bool, Run | None]:
        """(whether the installation still exists, its most recently created run or None).

        At most one run of an installation is active, and it is the most recent one."""
        with self._store.read() as conn:
            exists, doc = store.get_latest_run_doc(conn, installation_id)
        return exists, None if doc is None else Run.FromString(doc)

    def log_length(self, run_id: str) -> int:
        """Bytes in a run's stored log."""
        with self._store.read() as conn:
            return store.get_run_log_length(conn, run_id)

    def stored_log(self, run_id: str) -> bytes:
        """A run's whole stored log."""
        with self._store.read() as conn:
            return store.get_run_log(conn, run_id)

    def log_from(self, run_id: str, start: int, max_chunks: int = 64) -> bytes:
        """A run's stored log from byte ``start`` (at most ``max_chunks`` stored chunks)."""
        with self._store.read() as conn:
            return store.read_run_log(conn, run_id, start, max_chunks)

    def run_parameters(self, run_id: str) -> dict[str, Any]:
        """Every parameter value a run used, sensitive ones included (for the executor only)."""
        with self._store.read() as conn:
            raw = store.get_run_parameters(conn, run_id)
        if raw is None:
            raise NotFound(
                f"run {run_id} not found", reason="RUN_NOT_FOUND", metadata={"run_id": run_id}
            )
        result: dict[str, Any] = json.loads(raw)
        return result

    def revealed_outputs(self, run_id: str) -> dict[str, Any]:
        """Every output value of a run by name, sensitive ones included (for an authorized,
        audited reveal)."""
        with self._store.read() as conn:
            rows = store.list_output_values(conn, run_id)
        return {name: json.loads(text) for name, _, text in rows}

    # --- internals ---------------------------------------------------------------

    def _resolve(
        self, conn: Any, namespace: str, name: str, run_id: str, *, any_result: bool
    ) -> tuple[str, str]:
        pointers = store.get_installation_pointers(conn, namespace, name)
        if pointers is None:
            raise installation_not_found(namespace, name)
        installation_id, last_succeeded, last_finished = pointers
        if run_id != LATEST:
            if not is_id(run_id):
                raise InvalidArgument.from_violations(
                    [_violation("run_id", 'must be a run ID (a ULID) or "latest"')]
                )
            return installation_id, run_id.upper()
        target = last_finished if any_result else last_succeeded
        if target is None:
            why = "has no finished run" if any_result else "has no successful run"
            raise NotFound(
                f'installation {display_address(namespace, name)} {why}, so "latest" resolves to nothing',
                reason="NO_LATEST_RUN",
                metadata={
                    "namespace": namespace,
                    "name": name,
                    "any_result": str(any_result).lower(),
                },
            )
        return installation_id, target

    def _load(self, s: Any, run_id: str) -> RunRow:
        row = s.get(RunRow, run_id)
        if row is None:
            raise NotFound(
                f"run {run_id} not found", reason="RUN_NOT_FOUND", metadata={"run_id": run_id}
            )
        assert isinstance(row, RunRow)
        return row

    def _save(self, s: Any, row: RunRow, run: Run) -> None:
        row.state = run.state
        row.doc = run.SerializeToString()
        s.add(row)

    def _update_status(
        self, s: Any, row: InstallationRow, run: Run, *, finished: bool = False
    ) -> None:
        inst = Installation.FromString(row.doc)
        st = inst.status
        if not finished or st.run_id == run.id:
            st.run_id = run.id
            st.action = action_name(run)
            st.run_state = run.state
            st.bundle_reference = run.bundle_reference
            st.bundle_digest = run.bundle_digest
            st.bundle_version = run.bundle_version
        row.last_run_id = st.run_id
        if finished:
            row.last_finished_run_id = run.id
            if run.action in MODIFYING_ACTIONS:
                succeeded_uninstall = (
                    run.action == ACTION_UNINSTALL and run.state == RUN_STATE_SUCCEEDED
                )
                row.installed = not succeeded_uninstall
            if run.state == RUN_STATE_SUCCEEDED:
                row.last_succeeded_run_id = run.id
                st.last_succeeded_run_id = run.id
                if run.action in (ACTION_INSTALL, ACTION_UPGRADE):
                    st.state = INSTALLATION_STATE_INSTALLED
                    st.install_time.CopyFrom(run.complete_time)
                elif run.action == ACTION_UNINSTALL:
                    st.state = INSTALLATION_STATE_UNINSTALLED
                    st.uninstall_time.CopyFrom(run.complete_time)
            row.state = st.state
        now = self._clock()
        inst.update_time.CopyFrom(timestamp(now))
        inst.etag = new_etag()
        row.etag, row.updated_at, row.doc = inst.etag, now, inst.SerializeToString()
        s.add(row)


def _check_new_run(new: NewRun) -> None:
    v = Violations()
    if new.action not in (ACTION_INSTALL, ACTION_UPGRADE, ACTION_INVOKE, ACTION_UNINSTALL):
        v.add("action", "must be install, upgrade, invoke or uninstall")
    if (new.action == ACTION_INVOKE) != bool(new.custom_action):
        v.add("custom_action", "is required for invoke and only for invoke")
    if len(new.request_id) > 128:
        v.add("request_id", "is longer than 128 characters")
    v.raise_if_any()


def _struct(values: Mapping[str, Any]) -> Struct:
    st = Struct()
    json_format.ParseDict(dict(values), st)
    return st


def _output_row(run: Run, out: OutputValue, now: Any) -> OutputRow:
    text = canonical_json(out.value)
    msg = Output(
        name=out.name,
        type=out.type,
        sensitive=out.sensitive,
        run_id=run.id,
        digest="sha256:" + hashlib.sha256(text.encode()).hexdigest(),
    )
    if not out.sensitive:
        value = Value()
        json_format.ParseDict(out.value, value)
        msg.value.CopyFrom(value)
    msg.create_time.CopyFrom(timestamp(now))
    return OutputRow(
        run_id=run.id,
        name=out.name,
        sensitive=out.sensitive,
        value=text,
        doc=msg.SerializeToString(),
    )


def _violation(fieldname: str, description: str) -> Any:
    from porter_bundle.errors import FieldViolation

    return FieldViolation(fieldname, description)


def run_id_not_found(run_id: str) -> NotFound:
    """The error of a run addressed by its ID alone that does not exist (or that the caller
    may not see: the same error, so its existence is not disclosed)."""
    return NotFound(f"run {run_id} not found", reason="RUN_NOT_FOUND", metadata={"run_id": run_id})


def _run_not_found(namespace: str, name: str, run_id: str) -> NotFound:
    return NotFound(
        f"installation {display_address(namespace, name)} has no run {run_id}",
        reason="RUN_NOT_FOUND",
        metadata={"namespace": namespace, "name": name, "run_id": run_id},
    )
