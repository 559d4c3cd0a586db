"""``replicas``: the throughput of three replicas against one on the same PostgreSQL data.

A fresh database gets a bundle and a few hundred installations through the API; three
``porter-bundle serve`` processes share it. Each round measures one replica under the whole
load (``--concurrency`` callers), then the three at once, each under its share from a load
generator of its own, for the same ListInstallations page: on a machine of a few cores expect
no gain; the point is no loss and no error (every response is compared byte for byte, as
everywhere in the suite).
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import statistics
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

from bench import suite
from bench.plan import Plan
from bench.procs import ServerProcess, run_loadgen, start_porter_bundle
from bench.report import Figure
from porter.bundle.v1 import porter_bundle_pb2 as pb
from porter.bundle.v1 import porter_bundle_pb2_grpc
from porter.bundle.v1.installation_pb2 import BundleReference, Installation
from porter_bundle.store import create_key_file

REPLICAS = 3
TARGET_REPLICAS = 0.8
"""Three replicas serve at least this share of what one serves (no loss, beside noise)."""
INSTALLATIONS = 300
"""Installations the fresh database gets (in the namespace the list benchmark reads)."""


def fresh_database(admin_url: str) -> tuple[str, Callable[[], None]]:
    """A new PostgreSQL database on the server of ``admin_url``; its URL and how to drop it."""
    name = f"pbbench_{secrets.token_hex(4)}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")

    def drop() -> None:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.dispose()

    return make_url(admin_url).set(database=name).render_as_string(hide_password=False), drop


def populate(target: str) -> None:
    """A bundle and INSTALLATIONS installations of it, through the API."""
    with grpc.insecure_channel(target) as channel:
        stub = porter_bundle_pb2_grpc.PorterBundleStub(channel)
        stub.CreateBundle(
            pb.CreateBundleRequest(
                reference="localhost:5000/bench:v1", bundle_json=json.dumps(BUNDLE)
            )
        )
        for i in range(INSTALLATIONS):
            inst = Installation(
                namespace=suite.LIST_NAMESPACE,
                name=f"app-{i:04d}",
                bundle=BundleReference(repository="localhost:5000/bench", tag="v1"),
            )
            inst.labels["team"] = f"t{i % 7}"
            stub.CreateInstallation(pb.CreateInstallationRequest(installation=inst))


BUNDLE = {
    "schemaVersion": "v1.0.0",
    "name": "bench",
    "version": "1.0.0",
    "invocationImages": [{"imageType": "docker", "image": "localhost/bench:v1"}],
}


def bench_replicas_on(
    admin_url: str, work: Path, settings: suite.Settings, log: Callable[[str], None]
) -> tuple[list[Figure], dict[str, Any]]:
    """The replicas benchmark on a fresh database of the server at ``admin_url``."""
    url, drop = fresh_database(admin_url)
    work.mkdir(parents=True, exist_ok=True)
    key = work / "replicas.key"  # one key for all (they must share it); the data is throw-away
    key.unlink(missing_ok=True)
    create_key_file(key)
    try:
        servers = [
            start_porter_bundle(
                url, work / f"porter-bundle-replica{i}.log", "--encryption-key-file", str(key)
            )
            for i in range(REPLICAS)
        ]
        try:
            populate(servers[0].target)
            ctx = suite.Context(Plan(), servers[0], work, settings, log)
            figures = bench_replicas(ctx, servers)
        finally:
            for s in servers:
                s.stop()
    finally:
        drop()
    return figures, ctx.details


def bench_replicas(ctx: suite.Context, servers: list[ServerProcess]) -> list[Figure]:
    """Total ListInstallations rps of REPLICAS servers on one database, each loaded at once by
    its own generator (concurrency split), over one server under the whole concurrency."""
    raw = pb.ListInstallationsRequest(namespace=suite.LIST_NAMESPACE, page_size=10)
    request = raw.SerializeToString()
    one = dataclasses.replace(ctx, server=servers[0])
    req = ctx.save("replicas.req", request)
    resp = ctx.save("replicas.resp", one.call(suite.LIST_INSTALLATIONS, request))
    for s in servers:  # every replica answers the very same bytes
        if dataclasses.replace(ctx, server=s).call(suite.LIST_INSTALLATIONS, request) != (
            resp.read_bytes()
        ):
            raise RuntimeError(f"replica {s.target} answers other bytes")
    conc = ctx.settings.concurrency
    share = max(1, conc // REPLICAS)
    singles: list[float] = []
    multis: list[float] = []
    for n in range(ctx.settings.rounds):
        single = run_loadgen(_args(ctx, servers[0].target, req, resp, conc))["rps"]
        with ThreadPoolExecutor(REPLICAS) as pool:
            results: list[dict[str, Any]] = list(
                pool.map(lambda s: run_loadgen(_args(ctx, s.target, req, resp, share)), servers)
            )
        multi = sum(r["rps"] for r in results)
        singles.append(single)
        multis.append(multi)
        ctx.log(
            f"  replicas round {n + 1}: 1 replica {single:8.0f} rps, {REPLICAS} {multi:8.0f} rps"
        )
    one_rps, many_rps = statistics.median(singles), statistics.median(multis)
    ctx.details["replicas"] = {"one_rps": singles, "many_rps": multis, "concurrency": conc}
    return [
        Figure(
            f"{REPLICAS} replicas / 1 on one PostgreSQL: ListInstallations page 10 rps",
            many_rps / one_rps,
            "x",
            TARGET_REPLICAS,
            "min",
            f"{conc} callers in all, median of {ctx.settings.rounds} rounds",
        ),
        Figure("  1 replica rps", one_rps, "rps"),
        Figure(f"  {REPLICAS} replicas rps (sum)", many_rps, "rps"),
    ]


def _args(ctx: suite.Context, target: str, req: Path, resp: Path, concurrency: int) -> list[str]:
    s = ctx.settings
    return [
        "throughput",
        "--target",
        target,
        "--method",
        suite.LIST_INSTALLATIONS,
        "--request",
        str(req),
        "--expect",
        str(resp),
        "--concurrency",
        str(concurrency),
        "--duration",
        str(s.duration),
        "--warmup",
        str(s.warmup),
    ]
