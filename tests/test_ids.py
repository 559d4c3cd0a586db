"""ULIDs: each new one sorts after every one minted before, in one millisecond, across threads and
when the system clock goes back."""

from __future__ import annotations

import threading

import pytest
from ulid import ULID

from porter_bundle import ids
from porter_bundle.ids import is_id, new_id


def test_ids_minted_in_a_row_increase_and_are_ulids():
    minted = [new_id() for _ in range(5000)]  # thousands share a millisecond
    assert minted == sorted(minted) and len(set(minted)) == len(minted)
    assert all(is_id(i) and len(i) == 26 for i in minted)
    same_ms = [
        i for i in minted if ULID.from_str(i).milliseconds == ULID.from_str(minted[0]).milliseconds
    ]
    assert len(same_ms) > 1


def test_ids_still_increase_when_the_clock_goes_back(monkeypatch: pytest.MonkeyPatch):
    before = new_id()
    then = ULID.from_str(before).milliseconds
    monkeypatch.setattr(ids, "_wall_ms", lambda: then - 60_000)  # set a minute back
    after = [new_id() for _ in range(100)]
    assert [before, *after] == sorted([before, *after]) and len(set(after)) == 100


def test_ids_from_many_threads_are_unique_and_each_thread_sees_them_increase():
    per_thread: list[list[str]] = [[] for _ in range(4)]

    def mint(out: list[str]) -> None:
        out.extend(new_id() for _ in range(2000))

    threads = [threading.Thread(target=mint, args=(out,)) for out in per_thread]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(out == sorted(out) for out in per_thread)
    assert len({i for out in per_thread for i in out}) == 8000


def test_is_id():
    assert is_id(new_id())
    assert not is_id("not-a-ulid") and not is_id("0" * 25) and not is_id("U" * 26)
