"""The outputs sidecar of a Kubernetes run, and the server's reading of what it hands back.

``python -m porter_bundle.executor.job_outputs DIR LIMIT`` runs in the porter-bundle image beside
the invocation container (see :mod:`porter_bundle.executor.jobs`). It waits; when Kubernetes
stops it (SIGTERM, sent once the invocation container has exited) it prints one record to
standard output and exits 0::

    porter-bundle-outputs/v1 {"files": {"relative/path": "<base64>", ...}}
    porter-bundle-outputs/v1 {"error": "..."}

The server finds the record in the container's log (``pods/log?container=outputs``) with
:func:`parse_record`: the last line that starts with the marker, so nothing else the container
may print is mistaken for it. Files above ``LIMIT`` bytes in all are not sent: the record says so
and the run fails with that message, never with outputs silently missing.
"""

from __future__ import annotations

import base64
import json
import signal
import sys
import threading
from pathlib import Path

MARKER = "porter-bundle-outputs/v1 "


class OutputsUnreadable(Exception):
    """The sidecar's record is missing, malformed or an error; the message says which."""


def collect(directory: Path, limit: int) -> dict[str, object]:
    """The record of ``directory``: every regular file under it by relative path, or an error
    when they take more than ``limit`` bytes (symbolic links are not followed)."""
    files: dict[str, str] = {}
    total = 0
    if directory.is_dir():
        for path in sorted(directory.rglob("*")):
            if path.is_symlink() or not path.is_file():
                continue
            size = path.stat().st_size
            total += size
            if total > limit:
                return {"error": f"the run's outputs take more than {limit} bytes"}
            files[path.relative_to(directory).as_posix()] = base64.b64encode(
                path.read_bytes()
            ).decode()
    return {"files": files}


def record_line(record: dict[str, object]) -> str:
    """One record as the line the sidecar prints."""
    return MARKER + json.dumps(record, separators=(",", ":")) + "\n"


def parse_record(log: bytes) -> dict[str, bytes]:
    """The output files in a sidecar's log; OutputsUnreadable when there are none to read."""
    lines = [line for line in log.decode(errors="replace").splitlines() if line.startswith(MARKER)]
    if not lines:
        raise OutputsUnreadable("the outputs sidecar handed back no outputs (it did not finish)")
    try:
        record = json.loads(lines[-1][len(MARKER) :])
    except ValueError:
        raise OutputsUnreadable("the outputs sidecar's record is not JSON") from None
    if not isinstance(record, dict):
        raise OutputsUnreadable("the outputs sidecar's record is not an object")
    if "error" in record:
        raise OutputsUnreadable(str(record["error"])[:500])
    files = record.get("files")
    if not isinstance(files, dict):
        raise OutputsUnreadable("the outputs sidecar's record has no files")
    try:
        return {str(k): base64.b64decode(v, validate=True) for k, v in files.items()}
    except (ValueError, TypeError):
        raise OutputsUnreadable(
            "the outputs sidecar's record holds a file that is not base64"
        ) from None


def main(argv: list[str] | None = None) -> int:
    """The sidecar: waits for SIGTERM (or SIGINT), then prints the record of DIR.

    With READY_FILE, creates it once the signal handlers are in place: the pod's startup probe
    (``--ready READY_FILE``, true once it exists) holds the invocation container back until
    then, so a SIGTERM can never come before the sidecar is able to answer it."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) == 2 and args[0] == "--ready":
        return 0 if Path(args[1]).exists() else 1
    if len(args) not in (2, 3) or not args[1].isdigit():
        print(
            "usage: python -m porter_bundle.executor.job_outputs DIR LIMIT_BYTES [READY_FILE]\n"
            "       python -m porter_bundle.executor.job_outputs --ready READY_FILE",
            file=sys.stderr,
        )
        return 2
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    if len(args) == 3:
        Path(args[2]).touch()
    print("outputs sidecar ready", file=sys.stderr, flush=True)
    while not stop.wait(3600):
        pass
    sys.stdout.write(record_line(collect(Path(args[0]), int(args[1]))))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
