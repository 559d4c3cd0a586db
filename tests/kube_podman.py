"""The stand-in's kubelet on a real runtime: a Job's pod template played on Podman with
``podman kube play``, its real status and logs served through the stand-in's API.

What a kubelet does and Podman 4.3 does not, this module does, and only that:
- a native sidecar (an init container with ``restartPolicy: Always``) runs beside the
  invocation container and is stopped (SIGTERM, SIGKILL after the pod's grace) once the
  invocation container has exited;
- Secret volumes are projected as files, each ``subPath`` mount of one as a file of its own (a
  ``hostPath``: Podman 4.3's own Secret volumes crash it); ``secretKeyRef`` env goes through a
  Podman secret holding the Secret's ``data`` (what ``kube play`` reads);
- ``activeDeadlineSeconds`` and deletion stop the pod with its grace period.
The images, env, files, security context, ``emptyDir`` and the outputs sidecar are Podman's.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import json
import shutil
import subprocess
import tarfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from porter_bundle.executor.jobs import INVOCATION_CONTAINER, OUTPUTS_CONTAINER
from porter_bundle.executor.kube_logs import parse_stamp
from tests.kube_kubelet import Kubelet, Script

if TYPE_CHECKING:
    from tests.engine import Engine
    from tests.kube_cluster import Cluster

ROOT = Path(__file__).resolve().parents[1]


def helper_image(engine: Engine) -> str:
    """An image with Python and porter_bundle's executor package, like the porter-bundle image
    as far as the outputs sidecar uses it (the host's python3.11 and its standard library)."""
    ref = "localhost/porter-bundle-helper:test"
    if ref in engine._built:
        return ref
    rootfs = engine.root / "images" / "helper"
    shutil.rmtree(rootfs, ignore_errors=True)
    python = Path("/usr/bin/python3.11")
    needed = [python, Path("/lib64/ld-linux-x86-64.so.2")]
    ldd = subprocess.run(["ldd", str(python)], capture_output=True, text=True, check=True)
    needed += [Path(p.split()[2]) for p in ldd.stdout.splitlines() if "=>" in p]
    for path in needed:
        target = rootfs / str(path).lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path.resolve(), target)
    (rootfs / "usr/bin/python").symlink_to("python3.11")
    skip = shutil.ignore_patterns(
        "test",
        "tests",
        "idlelib",
        "tkinter",
        "ensurepip",
        "__pycache__",
        "site-packages",
        "dist-packages",
        "lib2to3",
        "pydoc_data",
    )
    shutil.copytree(
        "/usr/lib/python3.11", rootfs / "usr/lib/python3.11", ignore=skip, symlinks=True
    )
    package = ROOT / "src" / "porter_bundle"
    for module in (
        "__init__.py",
        "executor/__init__.py",
        "executor/base.py",
        "executor/job_outputs.py",
    ):
        target = rootfs / "app" / "porter_bundle" / module
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(package / module, target)
    for directory in ("tmp", "etc"):
        (rootfs / directory).mkdir(exist_ok=True)
    archive = rootfs.with_suffix(".tar")
    with tarfile.open(archive, "w") as tar:
        for child in sorted(rootfs.iterdir()):
            tar.add(child, arcname=child.name)
    engine.podman(
        "import",
        "--change",
        "ENV PATH=/usr/bin",
        "--change",
        "ENV PYTHONPATH=/app",
        str(archive),
        ref,
    )
    engine._built.add(ref)
    return ref


class PodmanKubelet(Kubelet):
    """Plays the Job's pod on Podman (see the module docstring)."""

    def __init__(self, cluster: Cluster, job: dict[str, Any], engine: Engine) -> None:
        super().__init__(cluster, job, Script())
        self.engine = engine
        self.dir = engine.root / "kubelet" / self.name
        self.grace = int(job["spec"]["template"]["spec"].get("terminationGracePeriodSeconds", 30))
        self._pumps: list[asyncio.Task[None]] = []
        self._played = False

    async def podman(self, *args: str, check: bool = True) -> str:
        proc = await asyncio.create_subprocess_exec(
            "podman", *args, env=self.engine.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        out, err = await proc.communicate()
        if check and proc.returncode != 0:
            raise RuntimeError(f"podman {' '.join(args)}: {err.decode()[-2000:]}")
        return out.decode()

    def _container(self, name: str) -> str:
        assert self.pod is not None
        return f"{self.pod['metadata']['name']}-{name}"

    async def run(self) -> None:
        self.killed = asyncio.Event()
        pod = self.pod = self._make_pod()
        await self.cluster.put("pods", pod, "ADDED")
        pod["status"]["conditions"] = [{"type": "PodScheduled", "status": "True"}]
        await self._play(self._pod_yaml())
        self._played = True
        await self._running()
        deadline = self.job["spec"].get("activeDeadlineSeconds")
        exited = asyncio.get_running_loop().create_task(self._exited(INVOCATION_CONTAINER))
        killed = asyncio.get_running_loop().create_task(self.killed.wait())
        done, _ = await asyncio.wait(
            {exited, killed}, timeout=deadline, return_when=asyncio.FIRST_COMPLETED
        )
        killed.cancel()
        if exited not in done:
            if not done:
                await self.deadline_exceeded()
            await self.podman("stop", "-t", str(self.grace), self._container(INVOCATION_CONTAINER))
        code = await exited
        if self._has_sidecar():  # the kubelet stops a native sidecar once the main one exited
            await self.podman("stop", "-t", str(self.grace), self._container(OUTPUTS_CONTAINER))
        await asyncio.gather(*self._pumps)
        await self._ended(code)

    async def delete_then_remove(self, grace: float) -> None:
        self.deletions.append(grace)
        self.grace = min(self.grace, int(grace))
        if self.killed is not None:
            self.killed.set()
        if self.task is not None:
            await asyncio.wait({self.task}, timeout=grace + 30)
        await self.teardown()
        if self.pod is not None:
            await self.cluster.remove("pods", self.ns, self.pod["metadata"]["name"])
        await self.cluster.remove("jobs", self.ns, self.name)

    async def teardown(self) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task
        if self._played:
            await self.podman(
                "pod", "rm", "-f", "-t", "0", self.pod["metadata"]["name"], check=False
            )  # type: ignore[index]
        await self.podman("secret", "rm", self.name, check=False)
        shutil.rmtree(self.dir, ignore_errors=True)

    # --- the pod -------------------------------------------------------------------------------

    def _pod_yaml(self) -> dict[str, Any]:
        assert self.pod is not None
        spec = copy.deepcopy(self.job["spec"]["template"]["spec"])
        for init in list(spec.get("initContainers") or []):
            if init.pop("restartPolicy", None) == "Always":  # a native sidecar
                spec["initContainers"].remove(init)
                spec["containers"].append(init)
        if not spec.get("initContainers"):
            spec.pop("initContainers", None)
        for key in ("automountServiceAccountToken", "imagePullSecrets", "serviceAccountName"):
            spec.pop(key, None)
        volumes = {v["name"]: v for v in spec.get("volumes") or []}
        extra: list[dict[str, Any]] = []
        for volume in volumes.values():
            if "secret" in volume:
                self._project(volume)
        for container in spec["containers"]:
            for mount in container.get("volumeMounts") or []:
                volume = volumes[mount["name"]]
                if "hostPath" in volume and volume.get("_projected") and mount.get("subPath"):
                    name = f"{mount['name']}-{len(extra)}"
                    path = f"{volume['hostPath']['path']}/{mount.pop('subPath')}"
                    extra.append({"name": name, "hostPath": {"path": path, "type": "File"}})
                    mount["name"] = name
        spec["volumes"] = [
            {k: v for k, v in vol.items() if k != "_projected"} for vol in volumes.values()
        ] + extra
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": self.pod["metadata"]["name"],
                "labels": self.pod["metadata"]["labels"],
            },
            "spec": spec,
        }

    def _project(self, volume: dict[str, Any]) -> None:
        name = volume["secret"]["secretName"]
        secret = self.cluster.objects[("secrets", self.ns, name)]
        target = self.dir / volume["name"]
        target.mkdir(parents=True, exist_ok=True)
        for key, value in (secret.get("data") or {}).items():
            (target / key).write_bytes(base64.b64decode(value))
            (target / key).chmod(volume["secret"].get("defaultMode", 0o644))
        volume.pop("secret")
        volume.update(hostPath={"path": str(target), "type": "Directory"}, _projected=True)

    async def _play(self, pod: dict[str, Any]) -> None:
        secret = self.cluster.objects[("secrets", self.ns, self.name)]
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "secret.json").write_text(json.dumps(secret.get("data") or {}))
        await self.podman("secret", "create", self.name, str(self.dir / "secret.json"))
        (self.dir / "pod.yaml").write_text(json.dumps(pod))
        await self.podman("kube", "play", "--start=false", str(self.dir / "pod.yaml"))
        sidecar = next(
            (c for c in pod["spec"]["containers"] if c["name"] == OUTPUTS_CONTAINER), None
        )
        if sidecar is not None:  # a native sidecar first, the others once its probe succeeds
            await self.podman("start", self._container(OUTPUTS_CONTAINER))
            probe = sidecar.get("startupProbe", {}).get("exec", {}).get("command")
            for _ in range(300 if probe else 0):
                exec_ = ("exec", self._container(OUTPUTS_CONTAINER), *probe)
                proc = await asyncio.create_subprocess_exec(
                    "podman",
                    *exec_,
                    env=self.engine.env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                if await proc.wait() == 0:
                    break
                await asyncio.sleep(0.2)
            else:
                if probe:
                    raise RuntimeError("the sidecar's startup probe never succeeded")
        await self.podman("start", self._container(INVOCATION_CONTAINER))

    async def _inspect(self, container: str) -> dict[str, Any]:
        found = json.loads(await self.podman("inspect", self._container(container)))
        return dict(found[0])

    async def _running(self) -> None:
        assert self.pod is not None
        info = await self._inspect(INVOCATION_CONTAINER)
        status = self._status({"running": {"startedAt": info["State"]["StartedAt"]}})
        status["imageID"] = f"{status['image'].split('@')[0]}@{info.get('ImageDigest', '')}"
        self.pod["status"].update(phase="Running", containerStatuses=[status])
        containers = [INVOCATION_CONTAINER]
        if self._has_sidecar():
            containers.append(OUTPUTS_CONTAINER)
            self.pod["status"]["initContainerStatuses"] = [
                self._status({"running": {}}, OUTPUTS_CONTAINER)
            ]
        for name in containers:
            self.cluster.logs.setdefault((self.ns, self.pod["metadata"]["name"], name), [])
            self._pumps.append(asyncio.get_running_loop().create_task(self._pump(name)))
        self.job["status"].update(active=1)
        await self.cluster.put("jobs", self.job)
        await self.cluster.put("pods", self.pod)

    async def _pump(self, container: str) -> None:
        """The container's log, line by line with Podman's timestamps, into the stand-in."""
        assert self.pod is not None
        proc = await asyncio.create_subprocess_exec(
            "podman",
            "logs",
            "-f",
            "-t",
            self._container(container),
            env=self.engine.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        assert proc.stdout is not None
        async for raw in proc.stdout:
            stamp, _, text = raw.partition(b" ")
            ns = parse_stamp(stamp) or time.time_ns()
            await self.cluster.write_log(self.ns, self.pod["metadata"]["name"], container, text, ns)
        await proc.wait()
        await self.cluster.end_log(self.ns, self.pod["metadata"]["name"], container)

    async def _exited(self, container: str) -> int:
        while True:
            info = await self._inspect(container)
            if info["State"]["Status"] in ("exited", "stopped"):
                return int(info["State"]["ExitCode"])
            await asyncio.sleep(0.2)

    async def _ended(self, code: int) -> None:
        assert self.pod is not None
        status = self.pod["status"]["containerStatuses"][0]
        status["state"] = {
            "terminated": {"exitCode": code, "reason": "Completed" if code == 0 else "Error"}
        }
        status["ready"] = False
        if self._has_sidecar():
            self.pod["status"]["initContainerStatuses"][0]["state"] = {
                "terminated": {"exitCode": 0}
            }
        self.pod["status"]["phase"] = "Succeeded" if code == 0 else "Failed"
        await self.cluster.put("pods", self.pod)
        await self.job_ended(code)
