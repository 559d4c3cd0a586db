"""Resource IDs: ULIDs, monotonic within this process so IDs minted in one millisecond still sort."""

from __future__ import annotations

import os
import threading
import time

from ulid import ULID

_lock = threading.Lock()
_last_ms = 0
_last_rand = 0
_RAND_MAX = (1 << 80) - 1


def new_id() -> str:
    """Returns a new ULID string, greater than every ULID this process minted before."""
    global _last_ms, _last_rand
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms <= _last_ms:
            ms = _last_ms
            rand = _last_rand + 1
            if rand > _RAND_MAX:  # 2**80 IDs in one millisecond: borrow the next one
                ms += 1
                rand = int.from_bytes(os.urandom(10), "big") >> 1
        else:
            # Leave headroom so increments within the millisecond cannot overflow.
            rand = int.from_bytes(os.urandom(10), "big") >> 1
        _last_ms, _last_rand = ms, rand
    return str(ULID.from_bytes(ms.to_bytes(6, "big") + rand.to_bytes(10, "big")))


def is_id(text: str) -> bool:
    """Tells whether ``text`` is a well-formed ULID."""
    if len(text) != 26:
        return False
    try:
        ULID.from_str(text)
    except ValueError:
        return False
    return True
