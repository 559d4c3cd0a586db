"""Reading runs: pages, one run or the "latest" alias, outputs, logs, and lookups for streams."""

from __future__ import annotations

import builtins
import json
from typing import Any

from porter.bundle.v1.run_pb2 import Run
from porter_bundle import store
from porter_bundle.errors import FieldViolation, InvalidArgument, NotFound, Violations
from porter_bundle.ids import is_id
from porter_bundle.service.common import display_address
from porter_bundle.service.installations import installation_not_found
from porter_bundle.service.paging import PageResult, fingerprint, finish_page, parse_page_request
from porter_bundle.service.runs.model import (
    LATEST,
    ResolvedOutputs,
    run_id_not_found,
    run_not_found,
)
from porter_bundle.store import Database
from porter_bundle.validation import check_address


class RunReader:
    """Answers queries about runs, their outputs and logs (read transactions only)."""

    _store: Database

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
            raise run_not_found(namespace, name, run_id)
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
                raise run_not_found(namespace, name, resolved)
            return ResolvedOutputs(resolved, state, store.list_output_docs(conn, resolved))

    # --- lookups (live streams, recovery, repeated requests) ---------------------------

    def active(self) -> builtins.list[Run]:
        """Every run still PENDING or RUNNING."""
        with self._store.read() as conn:
            return [Run.FromString(doc) for doc in store.active_run_docs(conn)]

    def find(self, namespace: str, name: str, run_id: str) -> Run:
        """A run of an installation by ID (no alias); NOT_FOUND when missing."""
        return self.get(namespace, name, run_id)

    def by_request(self, namespace: str, name: str, request_id: str) -> Run | None:
        """The run an earlier request with this ID created, or None."""
        with self._store.read() as conn:
            pointers = store.get_installation_pointers(conn, namespace, name)
            if pointers is None:
                raise installation_not_found(namespace, name)
            doc = store.get_run_doc_by_request(conn, pointers[0], request_id)
        return None if doc is None else Run.FromString(doc)

    def logs(self, namespace: str, name: str, run_id: str) -> tuple[Run, bytes]:
        """A run (``run_id`` may be "latest") and its stored log."""
        run = self.get(namespace, name, run_id)
        with self._store.read() as conn:
            return run, store.get_run_log(conn, run.id)

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
                    [FieldViolation("run_id", 'must be a run ID (a ULID) or "latest"')]
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
