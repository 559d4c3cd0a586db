"""The Porter operator's Jobs, played with podman: what ``createAgentJob`` builds, run for real.

No Kubernetes here, but an agent Job is one container with a known contract (getporter/operator
``controllers/agentaction_controller.go``), and this runs the built agent image the same way:

- ``--user 65532:0``, working directory ``/porter-workdir``, the image's ENTRYPOINT with the
  Job's ``Args``;
- ``/porter-config``: the merged PorterConfig as a mounted Secret (``..data/config.yaml`` and a
  ``config.yaml`` symlink to it), read-only; ``/porter-workdir``: the documents, the same way;
  ``/porter-shared``: the action's writable volume;
- the operator's env: ``PORTER_RUNTIME_DRIVER``, ``KUBE_NAMESPACE``, ``IN_CLUSTER``, ``LABELS``
  (sorted ``k=v``, plus ``jobType=bundle-installer``), ``JOB_VOLUME_NAME``, ``JOB_VOLUME_PATH``,
  ``CLEANUP_JOBS``, ``SERVICE_ACCOUNT``, ``AFFINITY_MATCH_LABELS``;
- the pod is run again after a non-zero exit, up to ``backoffLimit + 1`` pods (Kubernetes'
  default backoffLimit is 6), then the Job is Failed;
- the outcome becomes the resource's phase and conditions as ``applyJobToStatus``
  (controllers/porter_resource.go) computes them from the Job's status.

The documents are what the operator writes: ``yaml.Marshal`` of the CRD spec, so no
``schemaType`` and ``namespace`` always present (:func:`installation_document`).
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.helpers import secret_volume
from tests.image.images import Images

LABEL = "getporter.org/"
DEFAULT_BACKOFF_LIMIT = 6

# Phases and condition types of the operator's resources (api/v1/porter_resource.go).
PENDING, RUNNING, SUCCEEDED, FAILED = "Pending", "Running", "Succeeded", "Failed"


@dataclass
class Pod:
    """One attempt: the container's exit code and its log (stdout, then stderr)."""

    exit_code: int
    stdout: str
    stderr: str


@dataclass
class JobStatus:
    """The Job as Kubernetes reports it, and the resource's status the operator derives."""

    pods: list[Pod] = field(default_factory=list)
    complete: bool = False
    failed: bool = False

    @property
    def phase(self) -> str:
        return resource_status(self)[0]

    @property
    def conditions(self) -> dict[str, str]:
        return resource_status(self)[1]

    def log_after_args(self, args: list[str]) -> str:
        """What the operator's tests read: the last pod's log after the first ``args`` line."""
        log = self.pods[-1].stderr + self.pods[-1].stdout if self.pods else ""
        joined = " ".join(args)
        at = log.find(joined)
        return log[at + len(joined) :] if at >= 0 else ""


def resource_status(job: JobStatus) -> tuple[str, dict[str, str]]:
    """``applyJobToStatus``: phase and conditions (type -> reason) from the Job's status.

    Job exists -> Pending (Scheduled); any pod active/failed/succeeded -> Running (Started);
    condition JobComplete -> Succeeded (Completed); JobFailed -> Failed (Failed)."""
    conditions = {"Scheduled": "JobCreated"}
    phase = PENDING
    if job.pods:
        phase = RUNNING
        conditions["Started"] = "JobStarted"
    if job.complete:
        phase = SUCCEEDED
        conditions["Completed"] = "JobSucceeded"
    elif job.failed:
        phase = FAILED
        conditions["Failed"] = "JobFailed"
    return phase, conditions


@dataclass(frozen=True)
class Resource:
    """The operator resource an action is for: its kind, name, generation and retry annotation."""

    kind: str
    name: str
    generation: int = 1
    retry: str = ""


class Operator:
    """Runs agent Jobs for one namespace against a porter-bundle server on this host."""

    def __init__(
        self,
        images: Images,
        root: Path,
        *,
        namespace: str,
        porter_config: Mapping[str, Any],
        env_from: Mapping[str, str] | None = None,
        hosts: tuple[str, ...] = (),
        backoff_limit: int = DEFAULT_BACKOFF_LIMIT,
    ) -> None:
        self.images = images
        self.root = root
        self.namespace = namespace
        self.backoff_limit = backoff_limit
        self.porter_config = dict(porter_config)
        """The merged PorterConfig the operator mounts as config.yaml."""
        self.env_from = dict(env_from or {})
        self.hosts = hosts
        """Service names the pod resolves (cluster DNS; here --add-host) to this host."""
        self.jobs = 0

    # --- what the operator writes ----------------------------------------------------------

    def labels(self, resource: Resource) -> dict[str, str]:
        return {
            f"{LABEL}managed": "true",
            f"{LABEL}resourceKind": resource.kind,
            f"{LABEL}resourceName": resource.name,
            f"{LABEL}resourceGeneration": str(resource.generation),
            f"{LABEL}retry": resource.retry,
        }

    def env(self, resource: Resource, volume: str) -> dict[str, str]:
        labels = {**self.labels(resource), f"{LABEL}jobType": "bundle-installer"}
        affinity = [
            f"{LABEL}{k}={self.labels(resource)[LABEL + k]}"
            for k in ("resourceKind", "resourceName", "resourceGeneration", "retry")
        ]
        return {
            "PORTER_RUNTIME_DRIVER": "kubernetes",
            "KUBE_NAMESPACE": self.namespace,
            "IN_CLUSTER": "true",
            "LABELS": " ".join(f"{k}={v}" for k, v in sorted(labels.items())),
            "JOB_VOLUME_NAME": volume,
            "JOB_VOLUME_PATH": "/porter-shared",
            "CLEANUP_JOBS": "false",
            "SERVICE_ACCOUNT": "installer",
            "AFFINITY_MATCH_LABELS": " ".join(affinity),
            **self.env_from,  # envFrom: the optional porter-env Secret
        }

    # --- running a Job ---------------------------------------------------------------------

    def prepare(self, files: Mapping[str, str]) -> tuple[Path, str]:
        """A Job's volumes: the config and workdir Secrets, the shared volume."""
        self.jobs += 1
        job_dir = self.root / f"job-{self.jobs}"
        secret_volume(
            job_dir / "porter-config", {"config.yaml": yaml.safe_dump(self.porter_config)}
        )
        secret_volume(job_dir / "porter-workdir", dict(files))
        shared = job_dir / "porter-shared"
        shared.mkdir()
        shared.chmod(0o777)  # a PVC the pod's fsGroup 0 may write
        return job_dir, f"{self.namespace}-job-{self.jobs}"

    def command(
        self, resource: Resource, args: list[str], job_dir: Path, volume: str, name: str
    ) -> list[str]:
        cmd = [
            "run", "--name", name, "--user", "65532:0", "--workdir", "/porter-workdir",
            "--network", "host",
            "-v", f"{job_dir / 'porter-config'}:/porter-config:ro",
            "-v", f"{job_dir / 'porter-workdir'}:/porter-workdir:ro",
            "-v", f"{job_dir / 'porter-shared'}:/porter-shared",
        ]  # fmt: skip
        for host in self.hosts:
            cmd += ["--add-host", f"{host}:127.0.0.1"]
        for key, value in self.env(resource, volume).items():
            cmd += ["--env", f"{key}={value}"]
        return [*cmd, self.images.agent, *args]

    def run_job(
        self, resource: Resource, args: list[str], files: Mapping[str, str] | None = None
    ) -> JobStatus:
        """Runs the Job to its end: pods again after a failure, up to backoffLimit + 1."""
        return self.finish_job(resource, args, self.start_pod(resource, args, files or {}))

    def start_pod(
        self, resource: Resource, args: list[str], files: Mapping[str, str]
    ) -> tuple[str, subprocess.Popen[str], Path, str]:
        """Starts a Job's first pod and returns at once (to kill it mid-run)."""
        job_dir, volume = self.prepare(files)
        name = f"porter-agent-{uuid.uuid4().hex[:10]}"
        process = subprocess.Popen(
            ["podman", *self.command(resource, args, job_dir, volume, name)],
            env=self.images.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        return name, process, job_dir, volume

    def finish_job(
        self,
        resource: Resource,
        args: list[str],
        first: tuple[str, subprocess.Popen[str], Path, str],
    ) -> JobStatus:
        """Waits for the first pod, then retries as Kubernetes would, up to backoffLimit + 1."""
        name, process, job_dir, volume = first
        out, err = process.communicate(timeout=300)
        self.images.podman("rm", "-f", name, check=False)
        status = JobStatus(pods=[Pod(process.returncode, out, err)])
        if process.returncode == 0:
            status.complete = True
            return status
        for _ in range(self.backoff_limit):
            retry = f"porter-agent-{uuid.uuid4().hex[:10]}"
            done = self.images.podman(
                *self.command(resource, args, job_dir, volume, retry), timeout=300, check=False
            )
            self.images.podman("rm", "-f", retry, check=False)
            status.pods.append(Pod(done.returncode, done.stdout, done.stderr))
            if done.returncode == 0:
                status.complete = True
                return status
        status.failed = True
        return status


def installation_document(spec: Mapping[str, Any]) -> str:
    """What the operator writes for an Installation: yaml of its spec (no schemaType), the
    namespace always present (``""`` when the spec has none)."""
    doc = {"schemaVersion": "1.0.2", **spec}
    doc.setdefault("namespace", "")
    return yaml.safe_dump(doc, sort_keys=False)


def set_document(kind: str, spec: Mapping[str, Any]) -> str:
    """A CredentialSet or ParameterSet spec as the operator writes it."""
    version = "1.0.1" if kind == "CredentialSet" else "1.1.0"
    doc = {"schemaVersion": version, **spec}
    doc.setdefault("namespace", "")
    return yaml.safe_dump(doc, sort_keys=False)


class Server:
    """``porter-bundle serve`` as a real process on this host (what the Service fronts)."""

    def __init__(self, root: Path, engine_url: str, *extra: str) -> None:
        import re
        import sys

        bin_dir = Path(sys.executable).parent
        self.log_path = root / "server.log"
        self._log = self.log_path.open("w")
        self.process = subprocess.Popen(
            [
                str(bin_dir / "porter-bundle"),
                "serve",
                "--address",
                "127.0.0.1:0",
                "--data-dir",
                str(root / "data"),
                "--container-host",
                engine_url,
                "--grace-period",
                "1",
                *extra,
            ],
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
        )
        assert self.process.stdout is not None
        self.ports: dict[str, int] = {}
        for line in self.process.stdout:
            found = re.match(r"porter-bundle (?:(\S+) )?listening on port (\d+)", line)
            if found:
                self.ports[found.group(1) or "api"] = int(found.group(2))
            if "api" in self.ports:
                break
        if "api" not in self.ports:
            self.process.wait(timeout=10)
            raise RuntimeError(f"the server did not start: {self.log_path.read_text()[-3000:]}")

    @property
    def port(self) -> int:
        return self.ports["api"]

    def stop(self) -> None:
        assert self.process.stdout is not None
        self.process.stdout.close()
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        self._log.close()
