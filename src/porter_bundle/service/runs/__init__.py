"""Runs and their outputs: recorded here, by the executor and by tests, never by SQL elsewhere.

- ``model``: the run states, :class:`NewRun` (what to record), :class:`OutputValue`, the
  "latest" alias and the errors of a missing run;
- ``recording``: :class:`RunRecorder`, the executor's side (create, start, log, finish);
- ``reading``: :class:`RunReader`, pages, single runs, outputs, logs and stream lookups;
- ``leasing``: :class:`RunLeases`, which replica executes a run (claim, renew, release).

:class:`RunService` is both, over one database, clock and event hub.
"""

from __future__ import annotations

from porter_bundle.service.runs.leasing import RunLeases, TakenOver
from porter_bundle.service.runs.model import (
    ACTION_NAMES,
    ACTIVE_STATES,
    FINAL_STATES,
    LATEST,
    MODIFYING_ACTIONS,
    Lease,
    LeaseLost,
    NewRun,
    OutputValue,
    ResolvedOutputs,
    action_name,
    canonical_json,
    rendered_text,
    run_id_not_found,
    run_not_found,
)
from porter_bundle.service.runs.reading import RunReader
from porter_bundle.service.runs.recording import RunRecorder, output_row


class RunService(RunRecorder, RunReader, RunLeases):
    """Records runs and outputs, answers queries about them, and keeps their leases."""


__all__ = [
    "ACTION_NAMES",
    "ACTIVE_STATES",
    "FINAL_STATES",
    "LATEST",
    "MODIFYING_ACTIONS",
    "Lease",
    "LeaseLost",
    "NewRun",
    "OutputValue",
    "ResolvedOutputs",
    "RunLeases",
    "RunReader",
    "RunRecorder",
    "RunService",
    "TakenOver",
    "action_name",
    "canonical_json",
    "output_row",
    "rendered_text",
    "run_id_not_found",
    "run_not_found",
]
