"""The audit log: one JSON line per reveal of sensitive values.

Each line holds ``time`` (UTC, RFC 3339), ``principal``, ``method``, ``resource`` (what was
revealed, e.g. ``installations/team-a/web/runs/01J...``) and ``namespace`` — never a value.
Written to the ``--audit-log`` file (appended, flushed per line), else logged at INFO by the
``porter_bundle.audit`` logger.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("porter_bundle.audit")


def resource_name(kind: str, namespace: str, name: str, *sub: str) -> str:
    """The audited name of a resource: ``kind/namespace/name[/sub...]``, without the namespace
    segment for the global namespace (e.g. ``installations/team-a/web/runs/01J...``)."""
    return "/".join([kind, *([namespace] if namespace else []), name, *sub])


class AuditLog:
    """Appends reveal records to a file (or the log when ``path`` is empty)."""

    def __init__(
        self, path: str | Path = "", *, on_reveal: Callable[[str], None] | None = None
    ) -> None:
        self.path = Path(path) if path else None
        self._on_reveal = on_reveal
        """Told the method of each reveal (the metrics)."""
        self._lock = threading.Lock()
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.touch(mode=0o600, exist_ok=True)

    def reveal(self, *, principal: str, method: str, resource: str, namespace: str) -> None:
        """Records that ``principal`` was shown the sensitive values of ``resource``."""
        record = {
            "time": dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z"),
            "event": "reveal",
            "principal": principal,
            "method": method,
            "resource": resource,
            "namespace": namespace,
        }
        line = json.dumps(record, sort_keys=True)
        if self._on_reveal is not None:
            self._on_reveal(method)
        if self.path is None:
            log.info("%s", line)
            return
        with self._lock, self.path.open("a", encoding="utf-8") as f:
            f.write(line + "\n")
