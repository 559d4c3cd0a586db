"""The benchmarks: each measures porter-bundle against a reference, never against a clock.

* ``list``   ListInstallations throughput at N concurrent callers, as a ratio to a bare
  grpcio server serving the same response bytes, in rounds whose order turns (A/B, B/A, ...).
* ``depth``  latency of a page near the end of the table (reached with a page token)
  over the first page's latency.
* ``latest`` ListInstallationRunOutputs(run_id="latest") latency for an installation
  with many runs over one with a single run.
* ``rss``    the server's resident memory after a warm-up and its peak under load.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from bench.plan import Plan
from bench.procs import MemorySampler, ServerProcess, cpu_seconds, run_loadgen, start_bare
from bench.report import Figure
from porter.bundle.v1 import porter_bundle_pb2 as pb

SERVICE = "/porter.bundle.v1.PorterBundle/"
LIST_INSTALLATIONS = SERVICE + "ListInstallations"
LIST_OUTPUTS = SERVICE + "ListInstallationRunOutputs"
LIST_NAMESPACE = "ns-07"
WALK_PAGE_SIZE = 500
DEPTH_FRACTION = 0.99

TARGET_LIST_100 = 0.4
TARGET_LIST_10 = 0.6
TARGET_DEPTH = 1.5
TARGET_LATEST = 1.5
TARGET_RSS_MB = 150.0
TARGET_METRICS = 0.95


@dataclass(frozen=True)
class Settings:
    """How hard and how long to measure."""

    concurrency: int = 8
    duration: float = 5.0
    warmup: float = 1.0
    rounds: int = 3
    latency_iterations: int = 200


@dataclass
class Context:
    """What every benchmark needs: the plan, the running server, a scratch folder."""

    plan: Plan
    server: ServerProcess
    work: Path
    settings: Settings
    log: Callable[[str], None]
    details: dict[str, Any] = field(default_factory=dict)

    def call(self, method: str, request: bytes, timeout: float = 60.0) -> bytes:
        """One call to the real server with raw bytes (also how responses are captured)."""
        with grpc.insecure_channel(self.server.target) as channel:
            stub: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(method)
            response = stub(request, timeout=timeout)
        return response

    def save(self, name: str, data: bytes) -> Path:
        """Writes bytes to the scratch folder for the subprocesses to read."""
        path = self.work / name
        path.write_bytes(data)
        return path


def _throughput_args(ctx: Context, target: str, method: str, req: Path, exp: Path) -> list[str]:
    s = ctx.settings
    return [
        "throughput",
        "--target",
        target,
        "--method",
        method,
        "--request",
        str(req),
        "--expect",
        str(exp),
        "--concurrency",
        str(s.concurrency),
        "--duration",
        str(s.duration),
        "--warmup",
        str(s.warmup),
    ]


def _latency(
    ctx: Context, method: str, requests: list[Path], expects: list[Path], iterations: int
) -> list[dict[str, float]]:
    args = ["latency", "--target", ctx.server.target, "--method", method]
    for r in requests:
        args += ["--request", str(r)]
    for e in expects:
        args += ["--expect", str(e)]
    args += ["--iterations", str(iterations), "--warmup-iterations", str(max(5, iterations // 10))]
    result: list[dict[str, float]] = run_loadgen(args)["latency_ms"]
    return result


# --- list ------------------------------------------------------------------------------


def bench_list(ctx: Context, page_size: int) -> list[Figure]:
    """Throughput of one ListInstallations page vs a bare server serving the same bytes."""
    request = pb.ListInstallationsRequest(namespace=LIST_NAMESPACE, page_size=page_size)
    raw_request = request.SerializeToString()
    response = ctx.call(LIST_INSTALLATIONS, raw_request)
    parsed = pb.ListInstallationsResponse.FromString(response)
    if len(parsed.installations) != page_size:
        raise RuntimeError(f"expected {page_size} installations, got {len(parsed.installations)}")
    req = ctx.save(f"list{page_size}.req", raw_request)
    resp = ctx.save(f"list{page_size}.resp", response)
    bare = start_bare(LIST_INSTALLATIONS, resp, ctx.work / f"bare-list{page_size}.log")
    try:
        rps = _alternating(
            ctx, {"porter-bundle": ctx.server, "bare": bare}, req, resp, f"page_size={page_size}"
        )
    finally:
        bare.stop()
    real, base = statistics.median(rps["porter-bundle"]), statistics.median(rps["bare"])
    ctx.details[f"list_page_{page_size}"] = {
        "request": f"ListInstallations(namespace={LIST_NAMESPACE!r}, page_size={page_size})",
        "response_bytes": len(response),
        "rps_rounds": rps,
    }
    target = TARGET_LIST_100 if page_size == 100 else TARGET_LIST_10 if page_size == 10 else None
    conc = ctx.settings.concurrency
    return [
        Figure(
            f"ListInstallations page {page_size}: rps ratio to bare grpcio",
            real / base,
            "x",
            target,
            "min",
            f"{conc} callers, median of {ctx.settings.rounds} rounds each",
        ),
        Figure(f"  porter-bundle rps (page {page_size})", real, "rps"),
        Figure(f"  bare grpcio rps (page {page_size}, {len(response):,} B)", base, "rps"),
    ]


def _alternating(
    ctx: Context,
    sides: dict[str, ServerProcess],
    req: Path,
    resp: Path,
    label: str,
    cpu_us: dict[str, list[float]] | None = None,
) -> dict[str, list[float]]:
    """ListInstallations throughput of each server, in alternating rounds whose order turns
    each round (A/B, B/A, A/B, ...), so neither side always runs right after the other.
    ``cpu_us``: filled with each round's server CPU time per call (µs; the warm-up's calls
    taken at the round's rate)."""
    rps: dict[str, list[float]] = {side: [] for side in sides}
    s = ctx.settings
    for n in range(s.rounds):
        order = list(sides.items())
        for side, server in order if n % 2 == 0 else reversed(order):
            cpu_before = cpu_seconds(server.pid)
            result = run_loadgen(
                _throughput_args(ctx, server.target, LIST_INSTALLATIONS, req, resp)
            )
            used = cpu_seconds(server.pid) - cpu_before
            rps[side].append(result["rps"])
            per_call = used / (result["rps"] * (s.duration + s.warmup)) * 1e6
            if cpu_us is not None:
                cpu_us.setdefault(side, []).append(per_call)
            ctx.log(
                f"  list {label} round {n + 1} {side:13s} "
                f"{result['rps']:8.0f} rps  p50 {result['latency_ms']['p50']:.2f} ms  "
                f"server CPU {per_call:.0f} µs/call"
            )
    return rps


# --- metrics ---------------------------------------------------------------------------


def bench_metrics(
    ctx: Context, without: ServerProcess, with_metrics: ServerProcess, page_size: int = 10
) -> list[Figure]:
    """ListInstallations throughput of a server with --metrics-address over one without
    (same database, both new): what the call interceptor and the run metrics cost."""
    request = pb.ListInstallationsRequest(namespace=LIST_NAMESPACE, page_size=page_size)
    raw_request = request.SerializeToString()
    response = ctx.call(LIST_INSTALLATIONS, raw_request)
    req = ctx.save(f"metrics{page_size}.req", raw_request)
    resp = ctx.save(f"metrics{page_size}.resp", response)
    for server in (without, with_metrics):  # warm alike
        with grpc.insecure_channel(server.target) as channel:
            for _ in range(50):
                channel.unary_unary(LIST_INSTALLATIONS)(raw_request, timeout=60)
    cpu: dict[str, list[float]] = {}
    rps = _alternating(
        ctx, {"metrics off": without, "metrics on": with_metrics}, req, resp, "metrics", cpu
    )
    off, on = statistics.median(rps["metrics off"]), statistics.median(rps["metrics on"])
    cpu_off, cpu_on = statistics.median(cpu["metrics off"]), statistics.median(cpu["metrics on"])
    ctx.details["metrics"] = {"page_size": page_size, "rps_rounds": rps, "cpu_us_rounds": cpu}
    return [
        Figure(
            f"ListInstallations page {page_size}: rps with metrics on / off",
            on / off,
            "x",
            TARGET_METRICS,
            "min",
            f"{ctx.settings.concurrency} callers, median of {ctx.settings.rounds} rounds each",
        ),
        Figure("  rps, metrics on", on, "rps"),
        Figure("  rps, metrics off", off, "rps"),
        Figure(
            "  server CPU per call, metrics on / off",
            cpu_on / cpu_off,
            "x",
            note="median of each side's rounds; less hurt by other load than rps",
        ),
        Figure("  server CPU per call, metrics on", cpu_on, "µs"),
        Figure("  server CPU per call, metrics off", cpu_off, "µs"),
    ]


# --- depth -----------------------------------------------------------------------------


def bench_depth(ctx: Context) -> list[Figure]:
    """A page after row ~99% of the table (page token) vs the first page, all namespaces."""
    # Row ~99% of the table, leaving at least one full page after it.
    target_row = min(int(ctx.plan.installations * DEPTH_FRACTION), ctx.plan.installations - 100)
    token, seen, walk_started = "", 0, time.perf_counter()
    while seen < target_row:
        walk = pb.ListInstallationsRequest(
            all_namespaces=True,
            page_size=min(WALK_PAGE_SIZE, target_row - seen),
            page_token=token,
        )
        page = pb.ListInstallationsResponse.FromString(
            ctx.call(LIST_INSTALLATIONS, walk.SerializeToString())
        )
        seen += len(page.installations)
        token = page.next_page_token
        if not token:
            raise RuntimeError(f"the walk ended at row {seen}, before row {target_row}")
    walk_seconds = time.perf_counter() - walk_started
    first = pb.ListInstallationsRequest(all_namespaces=True, page_size=100)
    deep = pb.ListInstallationsRequest(all_namespaces=True, page_size=100, page_token=token)
    by_skip = pb.ListInstallationsRequest(all_namespaces=True, page_size=100, skip=seen)
    reqs = [
        ctx.save(f"depth-{n}.req", r.SerializeToString())
        for n, r in (("first", first), ("deep", deep), ("skip", by_skip))
    ]
    resps = [
        ctx.save(f"depth-{n}.resp", ctx.call(LIST_INSTALLATIONS, p.read_bytes()))
        for n, p in zip(("first", "deep", "skip"), reqs, strict=True)
    ]
    deep_page = pb.ListInstallationsResponse.FromString(resps[1].read_bytes())
    skip_page = pb.ListInstallationsResponse.FromString(resps[2].read_bytes())
    if len(deep_page.installations) != 100 or deep_page.installations != skip_page.installations:
        raise RuntimeError("the deep page by token and by skip differ")
    iterations = ctx.settings.latency_iterations
    lat = _latency(ctx, LIST_INSTALLATIONS, reqs[:2], resps[:2], iterations)
    skip_lat = _latency(ctx, LIST_INSTALLATIONS, reqs[::2], resps[::2], max(10, iterations // 10))
    ctx.details["depth"] = {
        "deep_row": seen,
        "walk_seconds": walk_seconds,
        "walk_page_size": WALK_PAGE_SIZE,
        "latency_ms": {"first": lat[0], "deep": lat[1]},
        "skip_latency_ms": {"first": skip_lat[0], "skip": skip_lat[1]},
    }
    return [
        Figure(
            f"Depth: page after row {seen:,} / first page (p50)",
            lat[1]["p50"] / lat[0]["p50"],
            "x",
            TARGET_DEPTH,
            "max",
            f"all_namespaces, page_size 100, page token; {iterations} calls each, alternating",
        ),
        Figure("  first page p50", lat[0]["p50"], "ms"),
        Figure(f"  page after row {seen:,} p50", lat[1]["p50"], "ms"),
        Figure(
            f"  same page via skip={seen:,} / first page (p50)",
            skip_lat[1]["p50"] / skip_lat[0]["p50"],
            "x",
            note="context: OFFSET paging",
        ),
    ]


# --- latest ----------------------------------------------------------------------------


def bench_latest(ctx: Context) -> list[Figure]:
    """Outputs of "latest" for the installation with the most runs vs one with a single run."""
    names = {"heavy": ctx.plan.heavy_index, "single": ctx.plan.single_index}
    reqs: list[Path] = []
    resps: list[Path] = []
    for label, index in names.items():
        namespace, name = ctx.plan.address(index)
        raw = pb.ListInstallationRunOutputsRequest(
            namespace=namespace, name=name, run_id="latest"
        ).SerializeToString()
        response = ctx.call(LIST_OUTPUTS, raw)
        if not pb.ListInstallationRunOutputsResponse.FromString(response).outputs:
            raise RuntimeError(f'"latest" of {namespace}/{name} has no outputs')
        reqs.append(ctx.save(f"latest-{label}.req", raw))
        resps.append(ctx.save(f"latest-{label}.resp", response))
    iterations = ctx.settings.latency_iterations
    lat = _latency(ctx, LIST_OUTPUTS, reqs, resps, iterations)
    heavy_runs = ctx.plan.run_counts[ctx.plan.heavy_index]
    ctx.details["latest"] = {"latency_ms": {"heavy": lat[0], "single": lat[1]}}
    return [
        Figure(
            f'Latest: outputs of "latest", {heavy_runs:,} runs / 1 run (p50)',
            lat[0]["p50"] / lat[1]["p50"],
            "x",
            TARGET_LATEST,
            "max",
            f"{iterations} calls each, alternating",
        ),
        Figure(f"  {heavy_runs:,}-run installation p50", lat[0]["p50"], "ms"),
        Figure("  1-run installation p50", lat[1]["p50"], "ms"),
    ]


# --- memory ----------------------------------------------------------------------------


def warm_up(ctx: Context) -> None:
    """Exercises every measured call once for a while, so caches and pools are filled."""
    raw = pb.ListInstallationsRequest(namespace=LIST_NAMESPACE, page_size=100).SerializeToString()
    req = ctx.save("warmup.req", raw)
    resp = ctx.save("warmup.resp", ctx.call(LIST_INSTALLATIONS, raw))
    args = _throughput_args(ctx, ctx.server.target, LIST_INSTALLATIONS, req, resp)
    args[args.index("--duration") + 1] = str(max(1.0, ctx.settings.duration / 2))
    run_loadgen(args)
    for index in (ctx.plan.heavy_index, ctx.plan.single_index):
        namespace, name = ctx.plan.address(index)
        ctx.call(
            LIST_OUTPUTS,
            pb.ListInstallationRunOutputsRequest(
                namespace=namespace, name=name, run_id="latest"
            ).SerializeToString(),
        )


def rss_after_warmup(ctx: Context) -> Figure:
    """VmRSS of the server now."""
    kib = ctx.server.memory()["VmRSS"]
    ctx.details["rss_after_warmup_kib"] = kib
    return Figure("Server RSS after warm-up", kib / 1024, "MB", TARGET_RSS_MB, "max", "VmRSS, MiB")


def rss_peak(ctx: Context, sampler: MemorySampler) -> Figure:
    """The highest resident memory seen: sampled under load, and the kernel's high-water mark."""
    hwm = ctx.server.memory()["VmHWM"]
    peak = max(hwm, sampler.peak_kib)
    ctx.details["rss_peak_kib"] = {"sampled_vmrss": sampler.peak_kib, "vmhwm": hwm}
    return Figure(
        "Server peak RSS under load", peak / 1024, "MB", TARGET_RSS_MB, "max", "VmHWM, MiB"
    )


def load_for_memory(ctx: Context) -> None:
    """Load with the biggest pages, for ``--only rss`` (the other benchmarks load it anyway)."""
    raw = pb.ListInstallationsRequest(all_namespaces=True, page_size=500).SerializeToString()
    req = ctx.save("rss.req", raw)
    resp = ctx.save("rss.resp", ctx.call(LIST_INSTALLATIONS, raw))
    run_loadgen(_throughput_args(ctx, ctx.server.target, LIST_INSTALLATIONS, req, resp))
