"""The container executor against a real Podman (its Docker-compatible API): what a container
sees, how it ends, cancel, recover and orphans, refusals."""

from __future__ import annotations

import asyncio
import os

import docker
import pytest

from porter_bundle.executor import (
    LABEL_MANAGED,
    LABEL_RUN_ID,
    ContainerExecutor,
    ContainerResult,
    ContainerSpec,
    container_name,
)
from porter_bundle.executor.lifecycle import LABEL_OUTPUTS_DIR
from tests.conftest import TestImage
from tests.helpers import own_orphans

pytestmark = pytest.mark.slow

# Deadlines for conditions the tests wait on (never a fixed sleep).
WAIT_SECONDS = 30.0

SHOW_ENV_AND_FILES = """#!/bin/sh
echo "action=$CNAB_ACTION"
echo "space=$WITH_SPACES"
cat /cnab/app/params/greeting; echo
cat /etc/porter/deep/nested/config.json; echo
stat -c '%a %n' /etc/porter/deep /etc/porter/deep/nested /etc/porter/deep/nested/config.json
"""

WAIT_TO_BE_STOPPED = """#!/bin/sh
echo ready
sleep 60
"""

TRAP_TERM = """#!/bin/sh
trap 'echo got TERM; exit 0' TERM
echo ready
# In the background, with wait: sh runs a trap only between commands.
sleep 60 & wait $!
"""

EXIT_WITH = """#!/bin/sh
echo "exiting with $CODE" >&2
exit "$CODE"
"""

WRITE_OUTPUTS = """#!/bin/sh
mkdir -p /cnab/app/outputs/sub/deeper
printf 'host=db;port=5432' > /cnab/app/outputs/conn
printf 'nested' > /cnab/app/outputs/sub/file
printf 'deepest' > /cnab/app/outputs/sub/deeper/leaf
: > /cnab/app/outputs/empty
printf '\\001\\002\\377' > /cnab/app/outputs/binary
ln -s conn /cnab/app/outputs/link
exit 2
"""

EMPTY_OUTPUTS = """#!/bin/sh
mkdir -p /cnab/app/outputs
"""

NO_OUTPUTS = """#!/bin/sh
echo nothing to see
"""

TWO_LINES = """#!/bin/sh
echo first
sleep 1
echo second
"""

FINISH_SOON = """#!/bin/sh
echo ready
sleep 1
mkdir -p /cnab/app/outputs
echo "recovered value" > /cnab/app/outputs/result
echo done
exit 4
"""


def spec_for(run_id: str, image: str, **overrides: object) -> ContainerSpec:
    return ContainerSpec(run_id=run_id, image=image, **overrides)  # type: ignore[arg-type]


class LogWatch:
    """An on_log sink that keeps chunks and lets a test wait for a text to appear."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self._changed = asyncio.Event()

    async def __call__(self, chunk: bytes) -> None:
        self.chunks.append(chunk)
        self._changed.set()

    @property
    def text(self) -> str:
        return b"".join(self.chunks).decode()

    async def wait_for(self, needle: str) -> None:
        async with asyncio.timeout(WAIT_SECONDS):
            while needle not in self.text:
                self._changed.clear()
                await self._changed.wait()


async def containers_of(api: docker.APIClient, run_id: str) -> list[dict[str, object]]:
    found: list[dict[str, object]] = await asyncio.to_thread(
        api.containers, all=True, filters={"label": f"{LABEL_RUN_ID}={run_id}"}
    )
    return found


# ---------------------------------------------------------------------------------------------
# What the container sees


async def test_env_and_files_are_visible(
    executor: ContainerExecutor, test_image: TestImage, run_id: str
) -> None:
    image = test_image("show-env", SHOW_ENV_AND_FILES)
    result = await executor.execute(
        spec_for(
            run_id,
            image,
            env={"CNAB_ACTION": "install", "WITH_SPACES": "a b  c"},
            files={
                "/cnab/app/params/greeting": b"hello from a file",
                "/etc/porter/deep/nested/config.json": b'{"k": 1}',
            },
        )
    )
    assert result.error == ""
    assert result.exit_code == 0, result.logs
    lines = result.logs.decode().splitlines()
    assert lines[:4] == ["action=install", "space=a b  c", "hello from a file", '{"k": 1}']
    assert lines[4:] == [
        "755 /etc/porter/deep",
        "755 /etc/porter/deep/nested",
        "644 /etc/porter/deep/nested/config.json",
    ]


async def test_labels_and_name_while_running(
    executor: ContainerExecutor,
    test_image: TestImage,
    run_id: str,
    engine_api: docker.APIClient,
) -> None:
    logs = LogWatch()
    task = asyncio.create_task(
        executor.execute(
            spec_for(
                run_id,
                test_image("wait", WAIT_TO_BE_STOPPED),
                labels={"sh.porter.bundle.installation": "dev/mysql", LABEL_RUN_ID: "forged"},
            ),
            logs,
        )
    )
    await logs.wait_for("ready")
    (container,) = await containers_of(engine_api, run_id)
    assert container["State"] == "running"
    assert container["Names"] == [f"/{container_name(run_id)}"]
    assert container_name(run_id) == f"porter-bundle-{run_id.lower()}"
    labels = container["Labels"]
    assert isinstance(labels, dict)
    assert labels[LABEL_MANAGED] == "true"
    assert labels[LABEL_RUN_ID] == run_id  # the executor's own labels win
    assert labels["sh.porter.bundle.installation"] == "dev/mysql"
    assert labels[LABEL_OUTPUTS_DIR] == "/cnab/app/outputs"
    assert await own_orphans(executor, run_id) == [run_id]

    assert await executor.cancel(run_id, 0.1)
    result = await task
    assert result.canceled
    assert await executor.settle()
    assert await containers_of(engine_api, run_id) == []


async def test_no_network_by_default(
    executor: ContainerExecutor, test_image: TestImage, run_id: str
) -> None:
    image = test_image("net", "#!/bin/sh\nls /sys/class/net\n")
    result = await executor.execute(spec_for(run_id, image))
    assert result.exit_code == 0, result.logs
    assert result.logs.split() == [b"lo"]


async def test_network_when_asked(
    executor: ContainerExecutor, test_image: TestImage, run_id: str
) -> None:
    # "host" needs no network configuration of Podman's own, unlike its default bridge.
    image = test_image("net", "#!/bin/sh\nls /sys/class/net\n")
    result = await executor.execute(spec_for(run_id, image, network="host"))
    assert result.exit_code == 0, result.logs
    assert sorted(result.logs.decode().split()) == sorted(os.listdir("/sys/class/net"))


async def test_custom_command_replaces_the_entrypoint(
    executor: ContainerExecutor, test_image: TestImage, run_id: str
) -> None:
    image = test_image("show-env", SHOW_ENV_AND_FILES)
    result = await executor.execute(spec_for(run_id, image, command=("/bin/echo", "custom")))
    assert (result.exit_code, result.logs) == (0, b"custom\n")


# ---------------------------------------------------------------------------------------------
# How it ends


async def test_exit_codes(executor: ContainerExecutor, test_image: TestImage, run_id: str) -> None:
    image = test_image("exit-with", EXIT_WITH)
    results = await asyncio.gather(
        *(
            executor.execute(spec_for(f"{run_id}{code}", image, env={"CODE": str(code)}))
            for code in (0, 3, 255)
        )
    )
    assert [(r.exit_code, r.logs, r.error) for r in results] == [
        (code, f"exiting with {code}\n".encode(), "") for code in (0, 3, 255)
    ]
    assert not any(r.timed_out or r.canceled for r in results)
    assert await executor.settle()
    assert await own_orphans(executor, run_id) == []


async def test_the_removal_goes_on_after_the_result_and_close_waits_for_it(
    podman_host: str, test_image: TestImage, run_id: str, engine_api: docker.APIClient
) -> None:
    image = test_image("exit-with", EXIT_WITH)
    executor = await asyncio.to_thread(ContainerExecutor, podman_host)
    results = await asyncio.gather(
        *(executor.execute(spec_for(f"{run_id}{n}", image, env={"CODE": "0"})) for n in range(3))
    )
    assert [r.exit_code for r in results] == [0, 0, 0]
    # Returned before the engine deleted every container: aclose (the server's shutdown
    # calls settle) waits for the removals instead of leaving them to the next start.
    await executor.aclose()
    for n in range(3):
        assert await containers_of(engine_api, f"{run_id}{n}") == []


async def test_outputs_are_collected_even_on_failure(
    executor: ContainerExecutor, test_image: TestImage, run_id: str
) -> None:
    result = await executor.execute(spec_for(run_id, test_image("outputs", WRITE_OUTPUTS)))
    assert result.exit_code == 2
    assert result.error == ""
    assert dict(result.outputs) == {
        "conn": b"host=db;port=5432",
        "sub/file": b"nested",
        "sub/deeper/leaf": b"deepest",
        "empty": b"",
        "binary": b"\x01\x02\xff",
    }


@pytest.mark.parametrize("script", [EMPTY_OUTPUTS, NO_OUTPUTS], ids=["empty-dir", "no-dir"])
async def test_no_outputs(
    executor: ContainerExecutor, test_image: TestImage, run_id: str, script: str
) -> None:
    result = await executor.execute(spec_for(run_id, test_image("no-outputs", script)))
    assert (result.exit_code, dict(result.outputs), result.error) == (0, {}, "")


async def test_outputs_dir_is_configurable(
    executor: ContainerExecutor, test_image: TestImage, run_id: str
) -> None:
    image = test_image("other-dir", "#!/bin/sh\nmkdir -p /out/x\necho -n v > /out/x/o\n")
    result = await executor.execute(spec_for(run_id, image, outputs_dir="/out"))
    assert dict(result.outputs) == {"x/o": b"v"}


async def test_logs_stream_while_running(
    executor: ContainerExecutor,
    test_image: TestImage,
    run_id: str,
    engine_api: docker.APIClient,
) -> None:
    running_at_first_chunk: list[bool] = []
    chunks: list[bytes] = []

    async def on_log(chunk: bytes) -> None:
        if not chunks:
            (container,) = await containers_of(engine_api, run_id)
            running_at_first_chunk.append(container["State"] == "running")
        chunks.append(chunk)

    result = await executor.execute(spec_for(run_id, test_image("two-lines", TWO_LINES)), on_log)
    assert result.exit_code == 0
    assert running_at_first_chunk == [True]
    assert b"".join(chunks) == result.logs == b"first\nsecond\n"


async def test_a_failing_log_sink_does_not_fail_the_run(
    executor: ContainerExecutor, test_image: TestImage, run_id: str
) -> None:
    calls = 0

    async def on_log(chunk: bytes) -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("sink broke")

    result = await executor.execute(spec_for(run_id, test_image("two-lines", TWO_LINES)), on_log)
    assert (result.exit_code, result.logs, calls) == (0, b"first\nsecond\n", 1)


async def test_timeout_stops_the_container(
    executor: ContainerExecutor,
    test_image: TestImage,
    run_id: str,
    engine_api: docker.APIClient,
) -> None:
    loop = asyncio.get_running_loop()
    began = loop.time()
    # sh as PID 1 with no trap ignores SIGTERM: this also proves the SIGKILL after the grace.
    result = await executor.execute(
        spec_for(run_id, test_image("wait", WAIT_TO_BE_STOPPED), timeout_seconds=1)
    )
    assert result.timed_out
    assert not result.canceled
    assert result.exit_code == 137
    assert result.logs == b"ready\n"
    assert loop.time() - began < 10
    assert await executor.settle()
    assert await containers_of(engine_api, run_id) == []


# ---------------------------------------------------------------------------------------------
# Cancel


async def test_cancel_lets_a_container_that_handles_term_finish(
    executor: ContainerExecutor, test_image: TestImage, run_id: str
) -> None:
    logs = LogWatch()
    task = asyncio.create_task(
        executor.execute(spec_for(run_id, test_image("trap", TRAP_TERM)), logs)
    )
    await logs.wait_for("ready")
    loop = asyncio.get_running_loop()
    began = loop.time()
    assert await executor.cancel(run_id, grace_seconds=20)
    assert loop.time() - began < 10  # it did not need the grace period
    result = await task
    assert result.canceled
    assert not result.timed_out
    assert result.exit_code == 0
    assert result.logs == b"ready\ngot TERM\n"


async def test_cancel_kills_a_container_that_ignores_term(
    executor: ContainerExecutor, test_image: TestImage, run_id: str
) -> None:
    logs = LogWatch()
    task = asyncio.create_task(
        executor.execute(spec_for(run_id, test_image("wait", WAIT_TO_BE_STOPPED)), logs)
    )
    await logs.wait_for("ready")
    loop = asyncio.get_running_loop()
    began = loop.time()
    assert await executor.cancel(run_id, grace_seconds=1)
    assert 1 <= loop.time() - began < 10
    result = await task
    assert (result.canceled, result.exit_code) == (True, 137)
    assert await executor.cancel(run_id, 1) is False  # nothing runs any more


async def test_cancel_right_away_never_leaves_a_container(
    executor: ContainerExecutor,
    test_image: TestImage,
    run_id: str,
    engine_api: docker.APIClient,
) -> None:
    image = test_image("wait", WAIT_TO_BE_STOPPED)
    task = asyncio.create_task(executor.execute(spec_for(run_id, image)))
    await asyncio.sleep(0)  # let execute begin (whatever stage it reaches)
    assert await executor.cancel(run_id, 0.1)
    result = await task
    assert result.canceled
    assert await executor.settle()
    assert await containers_of(engine_api, run_id) == []


async def test_cancel_of_an_unknown_run(executor: ContainerExecutor) -> None:
    assert await executor.cancel("01NOSUCHRUN", 1) is False


async def test_cancel_a_container_started_elsewhere(
    executor: ContainerExecutor,
    test_image: TestImage,
    run_id: str,
    engine_api: docker.APIClient,
) -> None:
    container_id = await start_like_a_previous_process(
        engine_api, test_image("trap", TRAP_TERM), run_id
    )
    await wait_for_log(engine_api, container_id, "ready")
    assert await executor.cancel(run_id, 20)
    state = (await asyncio.to_thread(engine_api.inspect_container, container_id))["State"]
    assert (state["Running"], state["ExitCode"]) == (False, 0)
    result = await executor.recover(run_id)
    assert result is not None
    assert (result.exit_code, result.logs) == (0, b"ready\ngot TERM\n")


# ---------------------------------------------------------------------------------------------
# Recover and orphans


async def start_like_a_previous_process(
    api: docker.APIClient, image: str, run_id: str, *, start: bool = True, **labels: str
) -> str:
    """Creates (and starts) a container the way an executor of a crashed process left it."""
    created = await asyncio.to_thread(
        api.create_container,
        image,
        entrypoint=["/cnab/app/run"],
        labels={LABEL_MANAGED: "true", LABEL_RUN_ID: run_id, **labels},
        name=container_name(run_id),
        host_config=api.create_host_config(network_mode="none"),
    )
    container_id: str = created["Id"]
    if start:
        await asyncio.to_thread(api.start, container_id)
    return container_id


async def wait_for_log(api: docker.APIClient, container_id: str, needle: str) -> None:
    """Follows the container's log until ``needle`` shows up."""

    def follow() -> None:
        seen = b""
        stream = api.logs(container_id, stream=True, follow=True)
        try:
            for chunk in stream:
                seen += chunk
                if needle.encode() in seen:
                    return
        finally:
            stream.close()
            stream._response.close()  # type: ignore[attr-defined]  # the SDK's close() does not
        raise AssertionError(f"the log ended without {needle!r}: {seen!r}")

    await asyncio.wait_for(asyncio.to_thread(follow), WAIT_SECONDS)


async def test_recover_a_container_left_running(
    executor: ContainerExecutor,
    test_image: TestImage,
    run_id: str,
    engine_api: docker.APIClient,
) -> None:
    await start_like_a_previous_process(engine_api, test_image("finish-soon", FINISH_SOON), run_id)
    assert await own_orphans(executor, run_id) == [run_id]
    result = await executor.recover(run_id)
    assert result == ContainerResult(
        exit_code=4,
        logs=b"ready\ndone\n",
        outputs={"result": b"recovered value\n"},
    )
    assert await own_orphans(executor, run_id) == []


async def test_recover_after_the_executing_task_was_cancelled(
    podman_host: str,
    executor: ContainerExecutor,
    test_image: TestImage,
    run_id: str,
    engine_api: docker.APIClient,
) -> None:
    logs = LogWatch()
    task = asyncio.create_task(
        executor.execute(spec_for(run_id, test_image("finish-soon", FINISH_SOON)), logs)
    )
    await logs.wait_for("ready")
    task.cancel()  # what a server shutdown does: the container must live on
    with pytest.raises(asyncio.CancelledError):
        await task
    (container,) = await containers_of(engine_api, run_id)
    assert container["State"] == "running"

    after_restart = await asyncio.to_thread(ContainerExecutor, podman_host)
    async with after_restart:
        assert await own_orphans(after_restart, run_id) == [run_id]
        result = await after_restart.recover(run_id)
    assert result is not None
    assert (result.exit_code, result.logs) == (4, b"ready\ndone\n")
    assert dict(result.outputs) == {"result": b"recovered value\n"}
    assert await containers_of(engine_api, run_id) == []


async def test_recover_keeps_the_runs_timeout(
    podman_host: str,
    executor: ContainerExecutor,
    test_image: TestImage,
    run_id: str,
) -> None:
    logs = LogWatch()
    spec = spec_for(run_id, test_image("wait", WAIT_TO_BE_STOPPED), timeout_seconds=2)
    task = asyncio.create_task(executor.execute(spec, logs))
    await logs.wait_for("ready")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    after_restart = await asyncio.to_thread(ContainerExecutor, podman_host, stop_grace_seconds=0.5)
    async with after_restart:
        result = await after_restart.recover(run_id)
    assert result is not None
    assert (result.timed_out, result.exit_code, result.logs) == (True, 137, b"ready\n")


async def test_recover_an_exited_container(
    executor: ContainerExecutor,
    test_image: TestImage,
    run_id: str,
    engine_api: docker.APIClient,
) -> None:
    container_id = await start_like_a_previous_process(
        engine_api, test_image("outputs", WRITE_OUTPUTS), run_id
    )
    await asyncio.to_thread(engine_api.wait, container_id)
    result = await executor.recover(run_id)
    assert result is not None
    assert result.exit_code == 2
    assert result.outputs["sub/deeper/leaf"] == b"deepest"


async def test_recover_a_container_that_never_started(
    executor: ContainerExecutor,
    test_image: TestImage,
    run_id: str,
    engine_api: docker.APIClient,
) -> None:
    await start_like_a_previous_process(
        engine_api, test_image("wait", WAIT_TO_BE_STOPPED), run_id, start=False
    )
    result = await executor.recover(run_id)
    assert result is not None
    assert result.exit_code is None
    assert "never started" in result.error
    assert await containers_of(engine_api, run_id) == []


async def test_recover_an_unknown_run(executor: ContainerExecutor) -> None:
    assert await executor.recover("01NOSUCHRUN") is None


# ---------------------------------------------------------------------------------------------
# Refusals


async def test_bad_file_paths_are_refused_before_any_container(
    executor: ContainerExecutor, test_image: TestImage, run_id: str
) -> None:
    image = test_image("no-outputs", NO_OUTPUTS)
    result = await executor.execute(spec_for(run_id, image, files={"relative/path": b"x"}))
    assert result.exit_code is None
    assert "not absolute" in result.error


async def test_a_missing_entrypoint_is_an_error_not_an_exit_code(
    executor: ContainerExecutor, test_image: TestImage, run_id: str
) -> None:
    image = test_image("no-outputs", NO_OUTPUTS)
    result = await executor.execute(spec_for(run_id, image, command=("/cnab/app/missing",)))
    assert result.exit_code is None
    assert f"running a container of image {image} failed" in result.error
    assert "/cnab/app/missing" in result.error


async def test_log_and_output_limits(podman_host: str, test_image: TestImage, run_id: str) -> None:
    image = test_image(
        "big",
        "#!/bin/sh\nprintf '0123456789abcdef'\nmkdir -p /cnab/app/outputs\n"
        "head -c 100000 /dev/zero > /cnab/app/outputs/big\n",
    )
    seen: list[bytes] = []

    async def on_log(chunk: bytes) -> None:
        seen.append(chunk)

    limited = await asyncio.to_thread(
        ContainerExecutor, podman_host, max_log_bytes=10, max_output_bytes=50_000
    )
    async with limited:
        result = await limited.execute(spec_for(run_id, image), on_log)
    assert b"".join(seen) == b"0123456789abcdef"
    assert result.logs == b"0123456789\n[log truncated: 6 more bytes]\n"
    assert result.exit_code == 0
    assert dict(result.outputs) == {}
    assert "exceed 50000 bytes" in result.error


async def test_the_same_run_twice_at_once(
    executor: ContainerExecutor, test_image: TestImage, run_id: str
) -> None:
    logs = LogWatch()
    spec = spec_for(run_id, test_image("wait", WAIT_TO_BE_STOPPED))
    first = asyncio.create_task(executor.execute(spec, logs))
    await logs.wait_for("ready")
    second = await executor.execute(spec)
    assert "already executing" in second.error
    await executor.cancel(run_id, 0.1)
    assert (await first).canceled
