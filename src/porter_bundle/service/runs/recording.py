"""Recording runs: the executor's side (create, start, log, finish), each change one transaction.

A run moves PENDING -> RUNNING -> SUCCEEDED | FAILED | CANCELED. Finishing a run
writes its state, message, outputs and the installation's status in one
transaction, following Porter: a successful install/upgrade marks the installation
installed, a successful uninstall marks it uninstalled, custom actions leave it alone.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
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
    RUN_STATE_PENDING,
    RUN_STATE_RUNNING,
    RUN_STATE_SUCCEEDED,
    Output,
    Run,
)
from porter_bundle import store
from porter_bundle.errors import Aborted, FailedPrecondition, InvalidArgument, NotFound, Violations
from porter_bundle.ids import new_id
from porter_bundle.service.claim_documents import (
    claim_document,
    modifies,
    placeholder_bundle,
    result_document,
)
from porter_bundle.service.common import Clock, display_address, new_etag, timestamp, utcnow
from porter_bundle.service.events import RunEvents
from porter_bundle.service.installations import installation_not_found
from porter_bundle.service.runs.model import (
    ACTIVE_STATES,
    FINAL_STATES,
    MODIFYING_ACTIONS,
    Lease,
    LeaseLost,
    NewRun,
    OutputValue,
    action_name,
    canonical_json,
    rendered_text,
)
from porter_bundle.store import (
    BundleDocumentRow,
    ClaimResultRow,
    ClaimRow,
    Database,
    DuplicateKey,
    InstallationRow,
    OutputRow,
    RunRow,
)
from porter_bundle.validation import check_address


class RunRecorder:
    """Writes runs, their logs and outputs, and keeps the installation's status in step."""

    def __init__(
        self,
        db: Database,
        *,
        clock: Clock = utcnow,
        events: RunEvents | None = None,
        output_retention_runs: int = 0,
    ) -> None:
        self._store = db
        self._clock = clock
        self.output_retention_runs = output_retention_runs
        """Keep output values of this many most recent runs per installation; 0 keeps all."""
        self.events = events or RunEvents()
        """Where committed state changes and log appends are published (for live streams)."""

    def create(
        self, namespace: str, name: str, new: NewRun, lease: Lease | None = None
    ) -> tuple[Run, bool]:
        """Records a PENDING run (leased to ``lease``'s owner, who will execute it); returns it
        and whether it is new (False: same request_id seen before)."""
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
            if lease is not None:
                row.owner, row.lease_expires_at = lease.owner, time.time() + lease.seconds
            try:
                store.add_run(s, row)
            except DuplicateKey as exc:
                if _active_run_conflict(str(exc)):  # the database's guard of one active run
                    raise Aborted(
                        f"installation {display_address(namespace, name)} has an active run; "
                        "wait for it to finish or cancel it",
                        reason="RUN_IN_PROGRESS",
                        metadata={"namespace": namespace, "name": name},
                    ) from None
                raise FailedPrecondition(
                    "a run with this request_id was created concurrently; retry to get it",
                    reason="REQUEST_IN_FLIGHT",
                ) from None
            self._add_claim(s, inst_row, run, new)
            self._add_result(s, run, now)
            self._update_status(s, inst_row, run)
        self.events.run_changed(run)
        return run, True

    def start(self, run_id: str, lease: Lease | None = None) -> Run | None:
        """Marks a PENDING run RUNNING (renewing ``lease``, which must still hold it: else
        :class:`LeaseLost`); None when it is no longer pending (canceled meanwhile)."""
        with self._store.write() as s:
            row = self._load(s, run_id)
            run = Run.FromString(row.doc)
            if run.state != RUN_STATE_PENDING:
                return None
            if lease is not None:
                _check_lease(row.id, row.owner, lease)
                row.lease_expires_at = time.time() + lease.seconds
            run.state = RUN_STATE_RUNNING
            now = self._clock()
            run.start_time.CopyFrom(timestamp(now))
            self._save(s, row, run)
            self._add_result(s, run, now)
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

    def mark_canceling(self, run_id: str) -> Run | None:
        """Sets ``canceling`` on a RUNNING run (CancelRun answers with it while the container
        is stopped); the run unchanged when it was set already; None when it is not running."""
        with self._store.write() as s:
            row = self._load(s, run_id)
            run = Run.FromString(row.doc)
            if run.state != RUN_STATE_RUNNING:
                return None
            if run.canceling:
                return run
            run.canceling = True
            self._save(s, row, run)
        self.events.run_changed(run)
        return run

    def note(self, run_id: str, message: str) -> Run | None:
        """Sets the message of a RUNNING run (what it waits for, e.g. an unreachable engine;
        "" once it goes on); None when it is not running."""
        with self._store.write() as s:
            row = self._load(s, run_id)
            run = Run.FromString(row.doc)
            if run.state != RUN_STATE_RUNNING:
                return None
            run.message = message
            self._save(s, row, run)
        self.events.run_changed(run)
        return run

    def append_log(self, run_id: str, chunk: bytes, lease: Lease | None = None) -> int:
        """Appends container output to a run's log; returns the new log length. With
        ``lease``, only while it holds the run (else :class:`LeaseLost`): a log is written
        once, by the run's owner."""
        with self._store.write() as s:
            if lease is not None:
                _, owner = store.lock_run_owner(s, run_id)
                _check_lease(run_id, owner, lease)
            end = store.append_run_log(s, run_id, chunk)
        self.events.log_appended(run_id, end - len(chunk), chunk)
        return end

    def mask_log(
        self, run_id: str, mask: Callable[[bytes], bytes], lease: Lease | None = None
    ) -> bool:
        """Masks a run's stored log in place (secrets become as many ``*``); False when
        nothing changed. The length never changes, so no offset a follower received moves:
        a mask that would change it is refused (ValueError). Only the run's own runner
        writes its log, and it has stopped appending by then, so the read and the rewrite
        need no common transaction."""
        with self._store.read() as conn:
            logs = store.get_run_log(conn, run_id)
        masked = mask(logs)
        if len(masked) != len(logs):
            raise ValueError("masking a run's log must keep its length")
        if masked == logs:
            return False
        with self._store.write() as s:
            if lease is not None:
                _, owner = store.lock_run_owner(s, run_id)
                _check_lease(run_id, owner, lease)
            store.replace_run_log(s, run_id, masked)
        self.events.log_appended(run_id, 0, None)
        return True

    def finish(
        self,
        run_id: str,
        state: int,
        message: str = "",
        outputs: Sequence[OutputValue] = (),
        *,
        only_if_state: int | None = None,
        image_digest: str = "",
        lease: Lease | None = None,
    ) -> Run:
        """Ends an active run with its outputs and updates the installation, all in one
        transaction. ``image_digest``: the digest of the image the engine ran, recorded
        when the run pinned none. With ``lease``, only while it holds the run (else
        :class:`LeaseLost`)."""
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
            if lease is not None:
                _check_lease(row.id, row.owner, lease)
            run.state = state  # type: ignore[assignment]
            run.message = message
            if image_digest and not run.invocation_image_digest:
                run.invocation_image_digest = image_digest
            run.complete_time.CopyFrom(timestamp(now))
            self._save(s, row, run)
            output_rows = [output_row(run, o, now) for o in outputs]
            store.add_outputs(s, row.installation_id, output_rows)
            if self.output_retention_runs > 0:
                # In the finishing transaction: readers see the values before or after, never
                # half-expired, and the installation's only active run is this one.
                store.expire_outputs(
                    s, row.installation_id, self.output_retention_runs, _expired_output
                )
            self._add_result(s, run, now, [Output.FromString(o.doc) for o in output_rows])
            inst_row = s.get(InstallationRow, row.installation_id)
            assert inst_row is not None  # runs are deleted with their installation
            self._update_status(s, inst_row, run, finished=True)
        self.events.run_changed(run)
        return run

    # --- internals ---------------------------------------------------------------

    def _load(self, s: Any, run_id: str) -> RunRow:
        # Locked until commit (PostgreSQL): a lease taken over meanwhile waits for this write.
        row = s.get(RunRow, run_id, with_for_update=True)
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

    def _add_claim(self, s: Any, inst_row: InstallationRow, run: Run, new: NewRun) -> None:
        """Records the run's CNAB claim: its bundle.json as the run got it, and its revision
        (new for a modifying action, the installation's current one otherwise)."""
        bundle: Mapping[str, Any] | None = new.bundle
        if bundle is None and new.bundle_digest:
            stored = s.get(BundleDocumentRow, new.bundle_digest)
            bundle = None if stored is None else json.loads(stored.content)
        if bundle is None:
            bundle = placeholder_bundle(run)
        revision = run.id
        if not modifies(run, bundle):
            revision = store.current_revision(s, inst_row.id) or run.id
        withheld = list(run.sensitive_parameters)
        public = {k: v for k, v in new.parameters.items() if k not in withheld}
        doc = claim_document(
            run, action_name(run), bundle, revision=revision, parameters=public, withheld=withheld
        )
        store.add_claim(
            s,
            ClaimRow(run_id=run.id, action=doc["action"], revision=revision, doc=json.dumps(doc)),
        )

    def _add_result(self, s: Any, run: Run, now: datetime, outputs: Sequence[Output] = ()) -> None:
        """Records the CNAB claim result of the state the run just reached."""
        result_id = new_id()
        doc = result_document(run, result_id, now, outputs)
        store.add_claim_result(
            s,
            ClaimResultRow(
                id=result_id, run_id=run.id, status=run.state, created_at=now, doc=json.dumps(doc)
            ),
        )

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


ACTIVE_RUN_INDEX = "ix_runs_active_installation"
"""The unique index of active runs per installation (store.models)."""


def _active_run_conflict(message: str) -> bool:
    """Whether a uniqueness violation is that of :data:`ACTIVE_RUN_INDEX`: PostgreSQL names
    the index, SQLite its one column (the request ID's constraint has two)."""
    return ACTIVE_RUN_INDEX in message or message.rstrip().endswith(": runs.installation_id")


def _check_lease(run_id: str, owner: str | None, lease: Lease) -> None:
    """Raises :class:`LeaseLost` unless ``lease``'s owner holds the run."""
    if owner != lease.owner:
        raise LeaseLost(
            f"run {run_id} is no longer executed by this replica ({lease.owner})",
            metadata={"run_id": run_id},
        )


def _check_new_run(new: NewRun) -> None:
    v = Violations()
    if new.action not in (ACTION_INSTALL, ACTION_UPGRADE, ACTION_INVOKE, ACTION_UNINSTALL):
        v.add("action", "must be install, upgrade, invoke or uninstall")
    if (new.action == ACTION_INVOKE) != bool(new.custom_action):
        v.add("custom_action", "is required for invoke and only for invoke")
    if len(new.request_id) > 128:
        v.add("request_id", "is longer than 128 characters")
    v.raise_if_any()


def _expired_output(doc: bytes) -> bytes:
    """An Output message once its value expired: no value, ``expired`` set."""
    out = Output.FromString(doc)
    out.ClearField("value")
    out.expired = True
    return out.SerializeToString()


def _struct(values: Mapping[str, Any]) -> Struct:
    st = Struct()
    json_format.ParseDict(dict(values), st)
    return st


def output_row(run: Run, out: OutputValue, now: Any) -> OutputRow:
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
    written = out.written
    return OutputRow(
        run_id=run.id,
        name=out.name,
        sensitive=out.sensitive,
        value=text,
        doc=msg.SerializeToString(),
        # Kept only when it is not what the value renders as (strings: the same text).
        written=None if written is None or written == rendered_text(text) else written,
        internal=out.internal,
    )
