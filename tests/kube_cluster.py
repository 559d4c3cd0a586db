"""A Kubernetes API stand-in over real HTTP, for the Job executor's tests (no cluster exists here).

An aiohttp server on 127.0.0.1:0, in a thread of its own, that keeps Jobs, pods, Secrets and
events as JSON objects the way the API server does (uids, resourceVersions, owner-reference
garbage collection, foreground deletion), records every request, serves pod watches and pod log
streams (``follow``, ``timestamps``, ``sinceTime`` to the second, ``limitBytes``), and checks a
bearer token. What a Job's pod does is played by a "kubelet" (:mod:`tests.kube_kubelet`): a
:class:`Script` (success, failure, hang, timeout, unschedulable, image pull error, quota, a log
stream that drops) or the real pod on Podman.
"""

from __future__ import annotations

import asyncio
import calendar
import copy
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from tests.kube_kubelet import Kubelet, Script

if TYPE_CHECKING:
    from tests.engine import Engine

Key = tuple[str, str, str]  # (kind, namespace, name)
BODY = web.RequestKey("json", object)


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, str]
    body: Any


def stamp(ns: int) -> str:
    """RFC 3339 with nanoseconds, as Go's RFC3339Nano writes it (trailing zeros dropped)."""
    seconds, frac = divmod(ns, 1_000_000_000)
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    fraction = f"{frac:09d}".rstrip("0")
    return f"{text}.{fraction}Z" if fraction else f"{text}Z"


def matches(labels: dict[str, str], selector: str) -> bool:
    for term in filter(None, selector.split(",")):
        key, _, value = term.partition("=")
        if labels.get(key) != value:
            return False
    return True


@dataclass
class Cluster:
    """The stand-in's state. Tests read ``requests`` and ``objects`` and set ``script``."""

    token: str = "kube-token"
    url: str = ""
    requests: list[Request] = field(default_factory=list)
    objects: dict[Key, dict[str, Any]] = field(default_factory=dict)
    logs: dict[tuple[str, str, str], list[tuple[int, bytes]]] = field(default_factory=dict)
    """(namespace, pod, container) -> (timestamp ns, line) in order."""
    log_ended: set[tuple[str, str, str]] = field(default_factory=set)
    script: Callable[[dict[str, Any]], Script] = lambda job: Script()
    version: int = 0
    pod_events: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    loop: asyncio.AbstractEventLoop | None = None
    changed: asyncio.Condition | None = None
    kubelets: dict[str, Kubelet] = field(default_factory=dict)
    engine: Engine | None = None
    """When set, Jobs' pods are played on this Podman (tests/kube_podman.py), not scripted."""

    # --- used by tests (any thread) ------------------------------------------------------------

    def calls(self, method: str | None = None, contains: str = "") -> list[Request]:
        return [
            r
            for r in list(self.requests)
            if (method is None or r.method == method) and contains in r.path
        ]

    def kubeconfig(self, path: Path) -> Path:
        doc = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "stand-in", "cluster": {"server": self.url}}],
            "users": [{"name": "porter-bundle", "user": {"token": self.token}}],
            "contexts": [
                {"name": "stand-in", "context": {"cluster": "stand-in", "user": "porter-bundle"}}
            ],
            "current-context": "stand-in",
        }
        path.write_text(json.dumps(doc))
        return path

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [o for (k, _, _), o in list(self.objects.items()) if k == kind]

    # --- used by the server and the kubelets (the server's loop) --------------------------------

    def bump(self, obj: dict[str, Any]) -> None:
        self.version += 1
        obj["metadata"]["resourceVersion"] = str(self.version)

    async def put(self, kind: str, obj: dict[str, Any], event: str = "MODIFIED") -> None:
        meta = obj["metadata"]
        self.bump(obj)
        self.objects[(kind, meta["namespace"], meta["name"])] = obj
        if kind == "pods":
            self.pod_events.append((self.version, {"type": event, "object": obj}))
        await self.notify()

    async def remove(self, kind: str, namespace: str, name: str) -> None:
        obj = self.objects.pop((kind, namespace, name), None)
        if obj is None:
            return
        self.bump(obj)
        if kind == "pods":
            self.pod_events.append((self.version, {"type": "DELETED", "object": obj}))
        # Garbage collection: whatever this object owned goes with it.
        uid = obj["metadata"].get("uid")
        for key, other in list(self.objects.items()):
            owners = other["metadata"].get("ownerReferences") or []
            if any(o.get("uid") == uid for o in owners):
                await self.remove(*key)
        await self.notify()

    async def notify(self) -> None:
        assert self.changed is not None
        async with self.changed:
            self.changed.notify_all()

    async def wait_change(self, seconds: float) -> None:
        assert self.changed is not None
        async with self.changed:
            with suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), seconds)

    async def write_log(self, namespace: str, pod: str, container: str, line: bytes, ns: int = 0):  # type: ignore[no-untyped-def]
        self.logs.setdefault((namespace, pod, container), []).append((ns or time.time_ns(), line))
        await self.notify()

    async def end_log(self, namespace: str, pod: str, container: str) -> None:
        self.log_ended.add((namespace, pod, container))
        await self.notify()


def _status(code: int, reason: str, message: str = "") -> web.Response:
    body = {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "reason": reason,
        "message": message,
        "code": code,
    }
    return web.json_response(body, status=code)


def _app(cluster: Cluster) -> web.Application:
    routes = web.RouteTableDef()

    @web.middleware
    async def record(request: web.Request, handler: Any) -> web.StreamResponse:
        body = None
        if request.can_read_body:
            raw = await request.read()
            body = json.loads(raw) if raw else None
        cluster.requests.append(
            Request(request.method, request.path, dict(request.query), copy.deepcopy(body))
        )
        request[BODY] = body
        if request.headers.get("Authorization") != f"Bearer {cluster.token}":
            return _status(401, "Unauthorized")
        response: web.StreamResponse = await handler(request)
        return response

    @routes.get("/version")
    async def version(request: web.Request) -> web.Response:
        return web.json_response({"major": "1", "minor": "30", "gitVersion": "v1.30.0-stand-in"})

    def kind_of(request: web.Request) -> str:
        return request.match_info["kind"]

    @routes.post(r"/{group:(api/v1|apis/batch/v1)}/namespaces/{ns}/{kind}")
    async def create(request: web.Request) -> web.Response:
        kind, ns = kind_of(request), request.match_info["ns"]
        obj = dict(request[BODY])
        meta = obj["metadata"] = {**obj["metadata"], "namespace": ns}
        if (kind, ns, meta["name"]) in cluster.objects:
            return _status(409, "AlreadyExists", f'{kind} "{meta["name"]}" already exists')
        meta.update(uid=str(uuid.uuid4()), creationTimestamp=stamp(time.time_ns())[:19] + "Z")
        if kind == "jobs":
            obj["status"] = {}
        await cluster.put(kind, obj, "ADDED")
        if kind == "jobs" and not obj["spec"].get("suspend"):
            start_kubelet(obj)
        return web.json_response(obj, status=201)

    def start_kubelet(job: dict[str, Any]) -> None:
        kubelet: Kubelet
        if cluster.engine is not None:
            from tests.kube_podman import PodmanKubelet

            kubelet = PodmanKubelet(cluster, job, cluster.engine)
        else:
            kubelet = Kubelet(cluster, job, cluster.script(job))
        cluster.kubelets[job["metadata"]["name"]] = kubelet
        kubelet.task = asyncio.get_running_loop().create_task(kubelet.run())

    @routes.get(r"/{group:(api/v1|apis/batch/v1)}/namespaces/{ns}/{kind}")
    async def listing(request: web.Request) -> web.StreamResponse:
        kind, ns = kind_of(request), request.match_info["ns"]
        labels = request.query.get("labelSelector", "")
        if request.query.get("watch") == "true":
            return await watch(request, ns, labels)
        fields = dict(
            t.partition("=")[::2] for t in request.query.get("fieldSelector", "").split(",") if t
        )
        items = []
        for (k, n, _), obj in list(cluster.objects.items()):
            if k != kind or n != ns or not matches(obj["metadata"].get("labels") or {}, labels):
                continue
            involved = obj.get("involvedObject") or {}
            if any(involved.get(f.split(".", 1)[1]) != v for f, v in fields.items()):
                continue
            items.append(obj)
        meta = {"resourceVersion": str(cluster.version)}
        return web.json_response({"kind": "List", "metadata": meta, "items": items})

    async def watch(request: web.Request, ns: str, labels: str) -> web.StreamResponse:
        try:
            return await _watch(request, ns, labels)
        except ConnectionError:  # the client went away (the executor stops at the first event)
            return web.Response()

    async def _watch(request: web.Request, ns: str, labels: str) -> web.StreamResponse:
        since = int(request.query.get("resourceVersion") or 0)
        until = time.monotonic() + float(request.query.get("timeoutSeconds") or 30)
        response = web.StreamResponse()
        response.content_type = "application/json"
        await response.prepare(request)
        while time.monotonic() < until:
            for version, event in list(cluster.pod_events):
                meta = event["object"]["metadata"]
                if (
                    version > since
                    and meta["namespace"] == ns
                    and matches(meta.get("labels") or {}, labels)
                ):
                    await response.write(json.dumps(event).encode() + b"\n")
                    since = version
            await cluster.wait_change(max(0.0, until - time.monotonic()))
        await response.write_eof()
        return response

    @routes.get(r"/{group:(api/v1|apis/batch/v1)}/namespaces/{ns}/{kind}/{name}")
    async def read(request: web.Request) -> web.Response:
        key = (kind_of(request), request.match_info["ns"], request.match_info["name"])
        obj = cluster.objects.get(key)
        if obj is None:
            return _status(404, "NotFound", f'{key[0]} "{key[2]}" not found')
        return web.json_response(obj)

    @routes.patch(r"/apis/batch/v1/namespaces/{ns}/{kind}/{name}")
    async def patch(request: web.Request) -> web.Response:
        key = (kind_of(request), request.match_info["ns"], request.match_info["name"])
        obj = cluster.objects.get(key)
        if obj is None:
            return _status(404, "NotFound")
        if request.headers.get("Content-Type") != "application/merge-patch+json":
            return _status(415, "UnsupportedMediaType")
        resumed = obj["spec"].get("suspend") and request[BODY]["spec"].get("suspend") is False
        obj["spec"].update(request[BODY].get("spec") or {})
        await cluster.put(key[0], obj)
        if resumed:
            start_kubelet(obj)
        return web.json_response(obj)

    @routes.delete(r"/{group:(api/v1|apis/batch/v1)}/namespaces/{ns}/{kind}/{name}")
    async def delete(request: web.Request) -> web.Response:
        key = (kind_of(request), request.match_info["ns"], request.match_info["name"])
        obj = cluster.objects.get(key)
        if obj is None:
            return _status(404, "NotFound")
        kubelet = cluster.kubelets.get(key[2]) if key[0] == "jobs" else None
        if request.query.get("propagationPolicy") == "Foreground" and kubelet is not None:
            obj["metadata"]["deletionTimestamp"] = stamp(time.time_ns())[:19] + "Z"
            obj["metadata"]["finalizers"] = ["foregroundDeletion"]
            await cluster.put(key[0], obj)
            grace = float(request.query.get("gracePeriodSeconds") or 30)
            asyncio.get_running_loop().create_task(kubelet.delete_then_remove(grace))
        else:
            if kubelet is not None:
                await kubelet.teardown()
            await cluster.remove(*key)
        return web.json_response({"kind": "Status", "status": "Success"})

    @routes.get("/api/v1/namespaces/{ns}/pods/{name}/log")
    async def pod_log(request: web.Request) -> web.StreamResponse:
        try:
            return await _pod_log(request)
        except ConnectionError:
            return web.Response()

    async def _pod_log(request: web.Request) -> web.StreamResponse:
        ns, name = request.match_info["ns"], request.match_info["name"]
        pod = cluster.objects.get(("pods", ns, name))
        container = request.query.get("container", "")
        if pod is None:
            return _status(404, "NotFound", f'pods "{name}" not found')
        key = (ns, name, container)
        if key not in cluster.logs:
            return _status(400, "BadRequest", f'container "{container}" is waiting to start')
        since = request.query.get("sinceTime")
        since_ns = (
            calendar.timegm(time.strptime(since, "%Y-%m-%dT%H:%M:%SZ")) * 10**9 if since else 0
        )
        with_stamps = request.query.get("timestamps") == "true"
        follow = request.query.get("follow") == "true"
        limit = int(request.query.get("limitBytes") or 0)
        kubelet = cluster.kubelets.get(pod["metadata"]["labels"].get("job-name", ""))
        drop = kubelet.drop_after(container) if kubelet and follow else None
        response = web.StreamResponse()
        response.content_type = "text/plain"
        await response.prepare(request)
        sent = lines = 0
        while True:
            entries = cluster.logs.get(key, [])
            for ts, line in entries[lines:]:
                lines += 1
                if ts < since_ns:
                    continue
                out = (stamp(ts).encode() + b" " + line) if with_stamps else line
                if limit and sent + len(out) > limit:
                    out = out[: limit - sent]
                await response.write(out)
                sent += len(out)
                if (limit and sent >= limit) or (drop is not None and lines >= drop):
                    await response.write_eof()
                    return response
            if not follow or key in cluster.log_ended or ("pods", ns, name) not in cluster.objects:
                break
            await cluster.wait_change(1.0)
        await response.write_eof()
        return response

    app = web.Application(middlewares=[record])
    app.add_routes(routes)
    return app


@contextmanager
def kube_cluster(engine: Engine | None = None) -> Iterator[Cluster]:
    """The stand-in, serving until the block ends; pods played on ``engine`` when given."""
    cluster = Cluster(engine=engine)
    ready = threading.Event()
    stopping: asyncio.Event | None = None

    async def serve() -> None:
        nonlocal stopping
        cluster.loop = asyncio.get_running_loop()
        cluster.changed = asyncio.Condition()
        stopping = asyncio.Event()
        runner = web.AppRunner(_app(cluster), handle_signals=False, shutdown_timeout=1)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        cluster.url = f"http://127.0.0.1:{port}"
        ready.set()
        await stopping.wait()
        for kubelet in list(cluster.kubelets.values()):
            await kubelet.teardown()
        await runner.cleanup()

    thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
    thread.start()
    assert ready.wait(10), "the Kubernetes stand-in did not start"
    try:
        yield cluster
    finally:
        assert cluster.loop is not None and stopping is not None
        cluster.loop.call_soon_threadsafe(stopping.set)
        thread.join(timeout=10)
