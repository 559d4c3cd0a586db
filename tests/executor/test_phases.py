"""The steps hook of executor.base: each phase() ends the step before and begins the next,
only in the task that set the hook; the last ends with the call, with its exception."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import pytest

from porter_bundle.executor import phase, reporting_phases


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        self.events.append(("begin", name))
        try:
            yield
        except BaseException as exc:
            self.events.append(("failed", f"{name}: {exc}"))
            raise
        self.events.append(("end", name))


def test_each_step_ends_the_one_before_and_the_call_ends_the_last():
    steps = Recorder()
    with reporting_phases(steps):
        phase("pull")
        phase("create")
    phase("after")  # no hook any more: nothing
    assert steps.events == [
        ("begin", "pull"),
        ("end", "pull"),
        ("begin", "create"),
        ("end", "create"),
    ]


def test_the_exception_that_ends_the_call_ends_the_step_it_happened_in():
    steps = Recorder()
    with pytest.raises(RuntimeError), reporting_phases(steps):
        phase("pull")
        phase("wait")
        raise RuntimeError("engine gone")
    assert steps.events[-2:] == [("begin", "wait"), ("failed", "wait: engine gone")]


def test_without_a_hook_phases_are_nothing():
    with reporting_phases(None):
        phase("pull")
    phase("pull")


async def test_a_hook_sees_only_the_steps_of_its_own_task():
    mine, theirs = Recorder(), Recorder()

    async def execute(steps: Recorder, name: str) -> None:
        with reporting_phases(steps):
            phase(f"{name} pull")
            await asyncio.sleep(0.01)
            phase(f"{name} wait")
            await asyncio.sleep(0.01)

    await asyncio.gather(execute(mine, "a"), execute(theirs, "b"))
    assert [n for kind, n in mine.events if kind == "begin"] == ["a pull", "a wait"]
    assert [n for kind, n in theirs.events if kind == "begin"] == ["b pull", "b wait"]
