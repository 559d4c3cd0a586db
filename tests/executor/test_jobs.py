"""A run as Kubernetes objects (executor.jobs) and the outputs sidecar (executor.job_outputs):
the objects are valid for Kubernetes 1.30, carry every input without a value in the Job's spec,
and the sidecar, run as a real process and stopped as Kubernetes stops it, hands back exactly
the files of its directory."""

from __future__ import annotations

import base64
import json
import signal
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest

from porter_bundle.executor import ContainerSpec
from porter_bundle.executor.job_outputs import OutputsUnreadable, collect, parse_record, record_line
from porter_bundle.executor.jobs import (
    INVOCATION_CONTAINER,
    OUTPUTS_CONTAINER,
    JobSettings,
    RunNotRepresentable,
    job_name,
    owned_by,
    run_job,
    run_secret,
)

RUN_ID = "01JDQ7Z1B2C3D4E5F6G7H8J9KM"
SETTINGS = JobSettings(
    namespace="team-a", helper_image="registry.example/porter-bundle@sha256:" + "a" * 64
)
SPEC = ContainerSpec(
    run_id=RUN_ID,
    image="registry.example/hello-installer@sha256:" + "b" * 64,
    env={
        "CNAB_ACTION": "install",
        "CNAB_INSTALLATION_NAME": "hello",
        "CNAB_REVISION": RUN_ID,
        "PORTER_INSTALLATION_NAMESPACE": "team-a",
        "DB_PASSWORD": "s3cret-value",
    },
    files={
        "/cnab/bundle.json": b'{"name":"hello"}',
        "/root/.kube/config": b"kube-credential-secret",
        "/cnab/app/blob": bytes(range(256)),
    },
    labels={"sh.porter.bundle.installation": "team-a/hello"},
    timeout_seconds=90.5,
    outputs_dir="/cnab/app/outputs",
)


def pod_of(job):
    return job["spec"]["template"]["spec"]


def test_the_job_and_secret_are_valid_kubernetes_objects():
    for obj in (run_job(SPEC, SETTINGS), run_secret(SPEC, SETTINGS)):
        kubernetes_validate.validate(obj, "1.30.0", strict=True)


def test_the_job_runs_once_within_the_runs_timeout():
    job = run_job(SPEC, SETTINGS)
    assert job["metadata"]["name"] == job_name(RUN_ID) == "pb-run-" + RUN_ID.lower()
    assert job["spec"]["backoffLimit"] == 0
    assert pod_of(job)["restartPolicy"] == "Never"
    assert job["spec"]["activeDeadlineSeconds"] == 91
    assert job["metadata"]["annotations"]["cnab.io/installation"] == "team-a/hello"
    assert job["metadata"]["annotations"]["cnab.io/action"] == "install"
    assert job["metadata"]["labels"]["porter-bundle.sh/run-id"] == RUN_ID
    assert pod_of(job)["automountServiceAccountToken"] is False
    (invocation,) = pod_of(job)["containers"]
    assert invocation["name"] == INVOCATION_CONTAINER
    assert invocation["image"] == SPEC.image
    assert invocation["command"] == ["/cnab/app/run"]


def test_no_input_value_is_in_the_jobs_spec_and_the_secret_carries_each_exactly():
    job, secret = run_job(SPEC, SETTINGS), run_secret(SPEC, SETTINGS)
    text = json.dumps(job)
    for value in SPEC.env.values():
        if value not in ("install", "hello", "team-a", RUN_ID):  # also names and labels
            assert value not in text
    assert "kube-credential-secret" not in text
    data = {k: base64.b64decode(v) for k, v in secret["data"].items()}
    (invocation,) = pod_of(job)["containers"]
    env = {
        e["name"]: data[e["valueFrom"]["secretKeyRef"]["key"]].decode() for e in invocation["env"]
    }
    assert env == SPEC.env
    assert {e["valueFrom"]["secretKeyRef"]["name"] for e in invocation["env"]} == {job_name(RUN_ID)}
    files = {
        m["mountPath"]: data[m["subPath"]]
        for m in invocation["volumeMounts"]
        if m["name"] == "inputs"
    }
    assert files == SPEC.files


def test_outputs_come_back_through_a_native_sidecar_sharing_an_empty_dir():
    pod = pod_of(run_job(SPEC, SETTINGS))
    (sidecar,) = pod["initContainers"]
    assert sidecar["name"] == OUTPUTS_CONTAINER
    assert sidecar["restartPolicy"] == "Always"
    assert sidecar["image"] == SETTINGS.helper_image
    ready = "/run/porter-bundle/outputs-ready"
    assert sidecar["command"][-3:] == [
        "/cnab/app/outputs",
        str(SETTINGS.outputs_limit_bytes),
        ready,
    ]
    # The invocation starts only once the sidecar can answer its SIGTERM (its startup probe).
    assert sidecar["startupProbe"]["exec"]["command"][-2:] == ["--ready", ready]
    assert {"name": "sidecar", "mountPath": "/run/porter-bundle"} in sidecar["volumeMounts"]
    assert {"name": "outputs", "emptyDir": {}} in pod["volumes"]
    (invocation,) = pod["containers"]
    assert {"name": "outputs", "mountPath": "/cnab/app/outputs"} in invocation["volumeMounts"]


def test_an_action_without_outputs_has_no_sidecar_and_no_deadline_when_untimed():
    spec = ContainerSpec(run_id=RUN_ID, image="busybox", outputs_dir="", timeout_seconds=None)
    job = run_job(spec, SETTINGS)
    assert "initContainers" not in pod_of(job)
    assert "activeDeadlineSeconds" not in job["spec"]
    kubernetes_validate.validate(job, "1.30.0", strict=True)


def test_a_service_account_and_pull_secrets_when_configured():
    settings = JobSettings(
        namespace="team-a",
        helper_image="porter-bundle",
        service_account="bundle-runner",
        image_pull_secrets=("regcred",),
    )
    pod = pod_of(run_job(SPEC, settings))
    assert pod["serviceAccountName"] == "bundle-runner"
    assert pod["automountServiceAccountToken"] is True
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]


def test_inputs_a_pod_cannot_take_are_refused_without_their_value():
    too_big = ContainerSpec(run_id=RUN_ID, image="x", files={"/cnab/big": b"x" * (1024 * 1024 + 1)})
    with pytest.raises(RunNotRepresentable, match="more than the 1048576 bytes"):
        run_secret(too_big, SETTINGS)
    odd = ContainerSpec(run_id=RUN_ID, image="x", env={"A B": "secret-value"})
    with pytest.raises(RunNotRepresentable) as e:
        run_secret(odd, SETTINGS)
    assert "secret-value" not in str(e.value)


def test_the_secret_is_owned_by_the_created_job():
    job = {**run_job(SPEC, SETTINGS)}
    job["metadata"] = {**job["metadata"], "uid": "4a8c3b2e-0000-4000-8000-000000000001"}
    owned = owned_by(run_secret(SPEC, SETTINGS), job)
    (ref,) = owned["metadata"]["ownerReferences"]
    assert ref["kind"] == "Job" and ref["uid"] == job["metadata"]["uid"]
    kubernetes_validate.validate(owned, "1.30.0", strict=True)


def test_a_record_is_parsed_from_a_log_with_other_lines():
    record = record_line({"files": {"a": base64.b64encode(b"1.50").decode()}})
    assert parse_record(b"noise\n" + record.encode() + b"more noise\n") == {"a": b"1.50"}
    for log, why in (
        (b"", "no outputs"),
        (b"porter-bundle-outputs/v1 {nope\n", "not JSON"),
        (b'porter-bundle-outputs/v1 {"error": "too big"}\n', "too big"),
        (b'porter-bundle-outputs/v1 {"files": {"a": "!!"}}\n', "not base64"),
    ):
        with pytest.raises(OutputsUnreadable, match=why):
            parse_record(log)


def run_sidecar(directory: Path, limit: int) -> bytes:
    """The sidecar as a real process, stopped the way Kubernetes stops it."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "porter_bundle.executor.job_outputs", str(directory), str(limit)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stderr is not None
    assert proc.stderr.readline() == b"outputs sidecar ready\n"
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    proc.stderr.close()
    assert proc.returncode == 0
    return out


def test_the_sidecar_hands_back_every_file_exactly_when_stopped(tmp_path):
    (tmp_path / "nested").mkdir()
    (tmp_path / "price").write_bytes(b"1.50")
    (tmp_path / "nested" / "state.tgz").write_bytes(bytes(range(256)) * 10)
    (tmp_path / "link").symlink_to("/etc/passwd")  # never followed
    files = parse_record(run_sidecar(tmp_path, 1 << 20))
    assert files == {"price": b"1.50", "nested/state.tgz": bytes(range(256)) * 10}


def test_the_sidecar_refuses_outputs_over_its_limit(tmp_path):
    (tmp_path / "big").write_bytes(b"x" * 101)
    with pytest.raises(OutputsUnreadable, match="more than 100 bytes"):
        parse_record(run_sidecar(tmp_path, 100))
    assert collect(tmp_path / "missing", 100) == {"files": {}}


def test_the_sidecar_tells_its_startup_probe_once_it_can_answer_sigterm(tmp_path):
    ready, outputs = tmp_path / "state" / "ready", tmp_path / "outputs"
    ready.parent.mkdir()
    outputs.mkdir()
    (outputs / "level").write_bytes(b"3")
    probe = [sys.executable, "-m", "porter_bundle.executor.job_outputs", "--ready", str(ready)]
    assert subprocess.run(probe).returncode == 1  # not started: the invocation waits
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "porter_bundle.executor.job_outputs",
            str(outputs),
            "100",
            str(ready),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stderr is not None
    assert proc.stderr.readline() == b"outputs sidecar ready\n"
    assert ready.exists() and subprocess.run(probe).returncode == 0
    proc.send_signal(signal.SIGTERM)  # the first signal after the probe said ready
    out, _ = proc.communicate(timeout=30)
    proc.stderr.close()
    assert proc.returncode == 0 and parse_record(out) == {"level": b"3"}
