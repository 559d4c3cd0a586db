"""ApplyInstallation's request_id: a re-run of the same request attaches to its run.

The Porter operator re-runs its agent for one action (pod retries, a Job recreated after its
TTL); the agent derives the request_id from the action, and the server must never start a
second run while the first is active or after it succeeded, but must try again after it failed.
"""

from __future__ import annotations

from porter.bundle.v1.run_pb2 import ACTION_INSTALL, RUN_STATE_FAILED, RUN_STATE_SUCCEEDED
from porter_bundle.executor import ContainerResult
from tests.helpers import failure
from tests.service.test_apply import (  # the same world: bundles, sets, the fake engine
    INSTALL,
    apply,
    document,
    fake,
    runs,
    services,
    settle,
    world,
)

__all__ = ["fake", "services", "world"]  # fixtures, used by name


def test_a_rerun_attaches_to_the_active_run_and_then_to_its_success(stub, world, fake):
    fake.hold.set()  # the first run stays RUNNING until released
    first = apply(stub, document(), request_id="k8s/dev/AgentAction/app-1/1/")
    assert first.decision == INSTALL and first.run.action == ACTION_INSTALL
    fake.started.wait(10)

    again = apply(stub, document(), request_id="k8s/dev/AgentAction/app-1/1/")
    assert again.run.id == first.run.id
    assert again.decision == INSTALL and "attached" in again.reason
    fake.hold.clear()
    settle(stub)

    after = apply(stub, document(), request_id="k8s/dev/AgentAction/app-1/1/")
    assert after.run.id == first.run.id and after.run.state == RUN_STATE_SUCCEEDED
    assert len(runs(stub)) == 1 and len(fake.specs) == 1

    # Another request (a new generation or retry annotation) decides afresh: in sync.
    other = apply(stub, document(), request_id="k8s/dev/AgentAction/app-1/1/2")
    assert not other.HasField("run") and len(runs(stub)) == 1


def test_after_a_failed_run_the_same_request_tries_again_once_per_call(stub, world, fake):
    fake.behaviour = lambda spec: ContainerResult(exit_code=1)
    first = apply(stub, document(), request_id="retry-me")
    settle(stub)
    assert runs(stub)[0].state == RUN_STATE_FAILED

    fake.behaviour = lambda spec: ContainerResult(exit_code=0)
    second = apply(stub, document(), request_id="retry-me")
    assert second.run.id != first.run.id and second.run.request_id == "retry-me~2"
    settle(stub)
    third = apply(stub, document(), request_id="retry-me")
    assert third.run.id == second.run.id and "attached" in third.reason
    assert len(runs(stub)) == 2


def test_a_request_id_too_long_is_refused(stub, world):
    err = failure(apply, stub, document(), request_id="x" * 121)
    assert err.code.name == "INVALID_ARGUMENT" and err.violations == {
        "request_id": "is longer than 120 characters"
    }
