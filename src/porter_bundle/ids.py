"""Resource IDs: ULIDs, monotonic within this process so IDs minted in one millisecond still sort."""

from __future__ import annotations

import threading
import time

from ulid import ULID, ULIDGenerator


def _wall_ms() -> int:
    """The system clock in milliseconds since the epoch."""
    return time.time_ns() // 1_000_000


class _SteadyClock:
    """Milliseconds since the epoch that never go back, even when the system clock is set back:
    IDs minted then share the last millisecond (python-ulid increments their random part)."""

    def __init__(self) -> None:
        self._last = 0

    def __call__(self) -> int:
        self._last = max(self._last, _wall_ms())
        return self._last


# python-ulid's strict monotonic policy (its default): within one millisecond each ID is the
# previous one plus one; it raises instead of ever minting a smaller ID (only if the 80 random
# bits overflow within one millisecond).
_generator = ULIDGenerator(clock=_SteadyClock())
# The generator reads its clock outside its own lock; reading and minting under one lock keeps
# IDs in the order their calls were made.
_lock = threading.Lock()


def new_id() -> str:
    """Returns a new ULID string, greater than every ULID this process minted before."""
    with _lock:
        return str(_generator.generate())


def is_id(text: str) -> bool:
    """Tells whether ``text`` is a well-formed ULID."""
    if len(text) != 26:
        return False
    try:
        ULID.from_str(text)
    except ValueError:
        return False
    return True
