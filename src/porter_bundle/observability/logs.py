"""The server's log: text or JSON lines, run lifecycle events at INFO, secrets always masked.

:func:`configure` is called once, by the entry point. In JSON (``--log-format json``) each
line is one object with a fixed field set: ``time`` (UTC, RFC 3339), ``level``, ``logger``,
``message``, and, when the line is about one, the fields of :data:`EVENT_FIELDS` (a run's
``run_id``, ``namespace``, ``installation``, ``action``, ``result``, ``duration_seconds``,
``incident``, ``cause``, ``principal``, ``detail``; a call's ``method``, ``code``, ``duration_seconds``,
``principal``); ``exception`` holds a traceback. :class:`RunLifecycleLog` turns the service
layer's run events (:mod:`porter_bundle.service.observe`) into such lines.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from typing import IO, Any, Literal

from porter_bundle.auth import authz
from porter_bundle.service.common import display_address
from porter_bundle.service.observe import Kind, RunEvent
from porter_bundle.service.redact import LogRedactingFilter
from porter_bundle.service.runs import action_name

LogFormat = Literal["text", "json"]
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
RUNS_LOGGER = "porter_bundle.runs"
ACCESS_LOGGER = "porter_bundle.access"

EVENT_FIELDS = (
    "event",
    "run_id",
    "namespace",
    "installation",
    "action",
    "result",
    "duration_seconds",
    "incident",
    "cause",
    "principal",
    "detail",
    "method",
    "code",
)
"""The fields a line may carry besides time, level, logger and message (always these names)."""


class JsonFormatter(logging.Formatter):
    """One JSON object per record: the fixed fields, the event fields it has, its traceback."""

    def format(self, record: logging.LogRecord) -> str:
        created = dt.datetime.fromtimestamp(record.created, dt.UTC)
        line: dict[str, Any] = {
            "time": created.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in EVENT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, ensure_ascii=False, default=str)


_OURS = "_porter_bundle_handler"
"""Marks the stderr handler :func:`configure` installed."""


def handler(stream: IO[str], log_format: LogFormat = "text") -> logging.Handler:
    """A handler writing to ``stream`` in ``log_format`` that masks the secrets of active runs
    (in messages, tracebacks and event fields)."""
    made = logging.StreamHandler(stream)
    made.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    made.addFilter(LogRedactingFilter())
    return made


def configure(level: str, log_format: LogFormat = "text") -> None:
    """Logs to stderr at ``level`` in ``log_format``, masking secrets on every handler. Called
    again (the command line configures logging before ``serve`` knows its settings), it
    changes the level and the format of the handler it installed."""
    root = logging.getLogger()
    ours = [h for h in root.handlers if getattr(h, _OURS, False)]
    if ours:
        for h in ours:
            h.setFormatter(handler(sys.stderr, log_format).formatter or logging.Formatter())
    else:
        made = handler(sys.stderr, log_format)
        setattr(made, _OURS, True)
        logging.basicConfig(level=level, handlers=[made])
    root.setLevel(level)
    for existing in logging.getLogger().handlers:  # basicConfig adds none when there are some
        if not any(isinstance(f, LogRedactingFilter) for f in existing.filters):
            existing.addFilter(LogRedactingFilter())
    # Alembic announces each of its plugins at INFO on every start; the migrations it runs stay.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)


_VERBS: dict[Kind, str] = {
    Kind.ACCEPTED: "accepted",
    Kind.STARTED: "started",
    Kind.FINISHED: "finished",
    Kind.CANCELED: "canceled",
    Kind.TIMED_OUT: "timed out",
    Kind.CANCEL_REQUESTED: "cancel requested",
    Kind.RECOVERED: "re-attached after a restart",
    Kind.RECOVERY_FAILED: "failed on recovery",
}


class RunLifecycleLog:
    """A run observer that logs each lifecycle event at INFO on ``porter_bundle.runs``."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self._log = logger or logging.getLogger(RUNS_LOGGER)

    def __call__(self, event: RunEvent) -> None:
        fields: dict[str, Any] = {"event": f"run.{event.kind.value}", "run_id": event.run_id}
        if event.kind is Kind.ORPHAN_REMOVED:
            self._log.info("removed the leftover container of run %s", event.run_id, extra=fields)
            return
        run = event.run
        assert run is not None
        fields.update(
            namespace=run.namespace,
            installation=run.installation,
            action=action_name(run),
            result=event.result,
        )
        text = f"run {run.id} ({action_name(run)} of {display_address(run.namespace, run.installation)}) {_VERBS[event.kind]}"
        duration = event.duration_seconds
        if duration is not None:
            fields["duration_seconds"] = round(duration, 3)
            text += f": {event.result} after {duration:.1f}s"
        if event.kind in (Kind.ACCEPTED, Kind.CANCEL_REQUESTED):  # in the caller's context
            fields["principal"] = authz.current().principal.name
            text += f" (by {fields['principal']})"
        if event.message:
            fields["detail"] = event.message
            text += f": {event.message}"
        if event.incident:
            fields["incident"] = event.incident
        if event.cause:
            fields["cause"] = event.cause
        self._log.info("%s", text, extra=fields)


class AccessLog:
    """One DEBUG line per finished call on ``porter_bundle.access``: method, code, duration and
    principal (never a request body). Given to the call wrapper as its ``finished``."""

    def __init__(self, *, authenticates: bool, logger: logging.Logger | None = None) -> None:
        self._log = logger or logging.getLogger(ACCESS_LOGGER)
        self._authenticates = authenticates

    @property
    def enabled(self) -> bool:
        """Whether lines are written at all (the log level is DEBUG)."""
        return self._log.isEnabledFor(logging.DEBUG)

    def __call__(self, method: str, seconds: float, code: str, principal: str | None) -> None:
        if not self._log.isEnabledFor(logging.DEBUG):
            return
        if principal is None:  # never authenticated: refused, or no authentication at all
            principal = "" if self._authenticates else authz.current().principal.name
        self._log.debug(
            "%s %s %.3fs %s",
            method,
            code,
            seconds,
            principal or "(unauthenticated)",
            extra={
                "event": "call",
                "method": method,
                "code": code,
                "duration_seconds": round(seconds, 6),
                "principal": principal,
            },
        )


__all__ = [
    "ACCESS_LOGGER",
    "EVENT_FIELDS",
    "RUNS_LOGGER",
    "AccessLog",
    "JsonFormatter",
    "LogFormat",
    "RunLifecycleLog",
    "configure",
    "handler",
]
