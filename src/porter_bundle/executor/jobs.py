"""A run as Kubernetes objects: the Job that runs its invocation image and the Secret that
carries its inputs (the groundwork of the Kubernetes Job executor; nothing here talks to a
cluster).

What cnab-go's Kubernetes driver does, and where this differs (the reasons are its weak spots):

- One Job per run, ``backoffLimit: 0`` and ``restartPolicy: Never`` (a CNAB action is never
  retried behind the caller's back), ``activeDeadlineSeconds`` from the run's timeout (cnab-go
  has none), ``ttlSecondsAfterFinished`` so a Job the server could not delete still goes away.
- Every input in one Secret, owned by the Job once it exists: the environment as ``secretKeyRef``
  entries (``env.<NAME>``), each file as a ``subPath`` mount of the Secret volume
  (``file.<n>``), so no value, sensitive or not, is in the Job's spec. cnab-go writes files to a
  shared volume instead.
- Outputs come back without a volume shared with the server (cnab-go needs one): the outputs
  directory is an ``emptyDir`` shared with a native sidecar (an init container with
  ``restartPolicy: Always``, Kubernetes >= 1.29) of the porter-bundle image. Kubernetes stops a
  native sidecar once the invocation container has exited, successfully or not; on that SIGTERM
  the sidecar prints the directory as one framed record to its log
  (:mod:`porter_bundle.executor.job_outputs`), which the server reads through the API
  (``pods/log``, container ``outputs``). Nothing is reachable from the pod, and the size is
  bounded.
- Labels select a run's objects again after a restart; values that are no label value (the
  installation's namespace/name) are annotations.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from porter_bundle.bundles.images import split_image
from porter_bundle.executor.base import ContainerSpec

LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_RUN_ID = "porter-bundle.sh/run-id"
LABEL_DRIVER = "cnab.io/driver"
ANNOTATION_INSTALLATION = "cnab.io/installation"
ANNOTATION_ACTION = "cnab.io/action"
ANNOTATION_REVISION = "cnab.io/revision"
ANNOTATION_OUTPUTS_DIR = "porter-bundle.sh/outputs-dir"
MANAGED_BY = "porter-bundle"

INVOCATION_CONTAINER = "invocation"
OUTPUTS_CONTAINER = "outputs"
SIDECAR_COMMAND = ("python", "-m", "porter_bundle.executor.job_outputs")
SIDECAR_STATE_DIR = "/run/porter-bundle"
SIDECAR_READY_FILE = f"{SIDECAR_STATE_DIR}/outputs-ready"
SECRET_LIMIT_BYTES = 1024 * 1024
"""Kubernetes refuses a Secret whose data is larger than 1 MiB."""

_ENV_NAME = re.compile(r"[-._a-zA-Z][-._a-zA-Z0-9]*")
"""Environment names a Secret key can carry (``env.<NAME>``)."""


class RunNotRepresentable(ValueError):
    """A run's inputs cannot be given to a pod (too large for a Secret, a name a key cannot
    hold); the message says which input, never its value."""


@dataclass(frozen=True)
class JobSettings:
    """How runs become Jobs in one cluster."""

    namespace: str
    """Where the Job, its pod and its Secret are created."""
    helper_image: str
    """The porter-bundle image, run as the outputs sidecar (pinned by digest in production)."""
    service_account: str = ""
    """The pod's service account; "" for none, with no API token mounted at all."""
    image_pull_secrets: tuple[str, ...] = ()
    ttl_seconds_after_finished: int = 3600
    outputs_limit_bytes: int = 4 * 1024 * 1024
    """The most output bytes a run may hand back (the sidecar refuses more, the run fails)."""
    termination_grace_seconds: int | None = None
    """The pod's ``terminationGracePeriodSeconds`` (SIGTERM to SIGKILL when the Job is deleted
    or times out); None for Kubernetes' default (30)."""


def job_name(run_id: str) -> str:
    """The name of a run's Job and Secret: ``pb-run-`` and the run's ULID, lower case (DNS-1123,
    33 characters, unique per run)."""
    return f"pb-run-{run_id.lower()}"


def run_labels(run_id: str) -> dict[str, str]:
    """The labels every object of a run carries (what recovery selects on)."""
    return {LABEL_MANAGED_BY: MANAGED_BY, LABEL_DRIVER: MANAGED_BY, LABEL_RUN_ID: run_id}


def run_secret(spec: ContainerSpec, settings: JobSettings) -> dict[str, Any]:
    """The Secret of a run's environment and files (``stringData`` is not used: files may be
    binary). RunNotRepresentable when it cannot be made."""
    data: dict[str, str] = {}
    for name, value in spec.env.items():
        if not _ENV_NAME.fullmatch(name):
            raise RunNotRepresentable(
                f"environment variable {name[:64]!r} cannot be passed to a Kubernetes pod"
            )
        data[f"env.{name}"] = base64.b64encode(value.encode()).decode()
    for n, (_, content) in enumerate(sorted(spec.files.items())):
        data[f"file.{n}"] = base64.b64encode(content).decode()
    size = sum(len(v) * 3 // 4 for v in data.values())
    if size > SECRET_LIMIT_BYTES:
        raise RunNotRepresentable(
            f"the run's environment and files take {size} bytes, more than the "
            f"{SECRET_LIMIT_BYTES} bytes a Kubernetes Secret holds"
        )
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": job_name(spec.run_id),
            "namespace": settings.namespace,
            "labels": run_labels(spec.run_id),
        },
        "type": "Opaque",
        "data": data,
    }


def run_job(spec: ContainerSpec, settings: JobSettings) -> dict[str, Any]:
    """The Job that runs ``spec`` once, with its inputs from :func:`run_secret`."""
    name = job_name(spec.run_id)
    labels = run_labels(spec.run_id)
    env = [
        {"name": n, "valueFrom": {"secretKeyRef": {"name": name, "key": f"env.{n}"}}}
        for n in spec.env
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "inputs", "mountPath": path, "subPath": f"file.{n}", "readOnly": True}
        for n, path in enumerate(sorted(spec.files))
    ]
    volumes: list[dict[str, Any]] = [
        {"name": "inputs", "secret": {"secretName": name, "defaultMode": 0o444}}
    ]
    init: list[dict[str, Any]] = []
    if spec.outputs_dir:
        volumes.append({"name": "outputs", "emptyDir": {}})
        volumes.append({"name": "sidecar", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}})
        mounts.append({"name": "outputs", "mountPath": spec.outputs_dir})
        init.append(_outputs_sidecar(spec.outputs_dir, settings))
    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": bool(settings.service_account),
        "containers": [
            {
                "name": INVOCATION_CONTAINER,
                "image": pinned_image(spec),
                "imagePullPolicy": "IfNotPresent",
                "command": list(spec.command),
                "env": env,
                "volumeMounts": mounts,
            }
        ],
        "volumes": volumes,
    }
    if init:
        pod["initContainers"] = init
    if settings.termination_grace_seconds is not None:
        pod["terminationGracePeriodSeconds"] = settings.termination_grace_seconds
    if settings.service_account:
        pod["serviceAccountName"] = settings.service_account
    if settings.image_pull_secrets:
        pod["imagePullSecrets"] = [{"name": s} for s in settings.image_pull_secrets]
    job_spec: dict[str, Any] = {
        # Created suspended: no pod until its Secret exists (owned by the Job, so made after
        # it); the executor then resumes it.
        "suspend": True,
        "backoffLimit": 0,
        "completions": 1,
        "parallelism": 1,
        "ttlSecondsAfterFinished": settings.ttl_seconds_after_finished,
        "template": {"metadata": {"labels": labels}, "spec": pod},
    }
    if spec.timeout_seconds:
        job_spec["activeDeadlineSeconds"] = max(1, int(spec.timeout_seconds + 0.999))
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": settings.namespace,
            "labels": labels,
            "annotations": {
                **_annotations(spec.env, spec.labels),
                ANNOTATION_OUTPUTS_DIR: spec.outputs_dir,
            },
        },
        "spec": job_spec,
    }


def pinned_image(spec: ContainerSpec) -> str:
    """The image by digest when the run knows its digest (``repo@sha256:...``)."""
    if not spec.image_digest or "@" in spec.image:
        return spec.image
    return f"{split_image(spec.image).repository}@{spec.image_digest}"


def owned_by(secret: dict[str, Any], job: Mapping[str, Any]) -> dict[str, Any]:
    """``secret`` owned by the created ``job`` (its uid known), so deleting the Job deletes it."""
    meta = job["metadata"]
    owned = {**secret, "metadata": {**secret["metadata"]}}
    owned["metadata"]["ownerReferences"] = [
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "name": meta["name"],
            "uid": meta["uid"],
            "controller": False,
            "blockOwnerDeletion": True,
        }
    ]
    return owned


def _outputs_sidecar(outputs_dir: str, settings: JobSettings) -> dict[str, Any]:
    return {
        "name": OUTPUTS_CONTAINER,
        "image": settings.helper_image,
        "imagePullPolicy": "IfNotPresent",
        "restartPolicy": "Always",  # a native sidecar: stopped once the invocation has exited
        "command": [
            *SIDECAR_COMMAND,
            outputs_dir,
            str(settings.outputs_limit_bytes),
            SIDECAR_READY_FILE,
        ],
        # The kubelet starts the invocation container only once a native sidecar's startup
        # probe succeeds: here, once the sidecar can answer the SIGTERM that ends it.
        "startupProbe": {
            "exec": {"command": [*SIDECAR_COMMAND, "--ready", SIDECAR_READY_FILE]},
            "periodSeconds": 1,
            "failureThreshold": 120,
        },
        "volumeMounts": [
            {"name": "outputs", "mountPath": outputs_dir, "readOnly": True},
            {"name": "sidecar", "mountPath": SIDECAR_STATE_DIR},
        ],
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 65532,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}},
    }


def _annotations(env: Mapping[str, str], labels: Mapping[str, str]) -> dict[str, str]:
    namespace = env.get("PORTER_INSTALLATION_NAMESPACE", "")
    name = env.get("CNAB_INSTALLATION_NAME", "")
    return {
        ANNOTATION_INSTALLATION: f"{namespace}/{name}" if namespace else name,
        ANNOTATION_ACTION: env.get("CNAB_ACTION", ""),
        ANNOTATION_REVISION: env.get("CNAB_REVISION", ""),
        **labels,
    }


__all__ = [
    "ANNOTATION_OUTPUTS_DIR",
    "INVOCATION_CONTAINER",
    "OUTPUTS_CONTAINER",
    "JobSettings",
    "RunNotRepresentable",
    "job_name",
    "owned_by",
    "pinned_image",
    "run_job",
    "run_labels",
    "run_secret",
]
