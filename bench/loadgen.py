"""The load generator: a separate client process that measures one server.

Requests and responses travel as raw bytes (identity serializers), so the client spends
no time on protobuf and costs the same against the real server and the bare one.

Two modes, each printing one JSON object on stdout:

``throughput``
    ``concurrency`` tasks call one method in a closed loop; calls completed during
    ``duration`` seconds after ``warmup`` seconds count. Prints calls, seconds, rps and
    latency percentiles.
``latency``
    One caller alternates between several requests (A, B, A, B, ...) so drift hits
    each the same; prints each request's latency percentiles in milliseconds.

Every response is compared with the expected bytes when ``--expect`` files are given.

Usage: ``python -m bench.loadgen throughput --target HOST:PORT --method /pkg.Svc/M
--request REQ.bin [--expect RESP.bin] [--concurrency 8 --duration 5 --warmup 1]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc


def percentiles(samples: Sequence[float]) -> dict[str, float]:
    """p50/p90/p99 and mean of samples (same unit as the samples)."""
    if not samples:
        return {"p50": 0.0, "p90": 0.0, "p99": 0.0, "mean": 0.0}
    ordered = sorted(samples)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return {"p50": at(0.5), "p90": at(0.9), "p99": at(0.99), "mean": statistics.fmean(ordered)}


class Mismatch(RuntimeError):
    """A response differed from the expected bytes."""


async def throughput(
    target: str,
    method: str,
    request: bytes,
    expect: bytes | None,
    *,
    concurrency: int,
    duration: float,
    warmup: float,
) -> dict[str, Any]:
    """Closed-loop load: ``concurrency`` callers, counted over ``duration`` after ``warmup``."""
    async with grpc.aio.insecure_channel(target) as channel:
        call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(method)
        await asyncio.wait_for(channel.channel_ready(), 10)
        counting = False
        stop = False
        latencies: list[float] = []
        errors: list[str] = []

        async def caller() -> None:
            while not stop:
                t0 = time.perf_counter()
                try:
                    response = await call(request)
                except grpc.aio.AioRpcError as exc:
                    errors.append(f"{exc.code().name}: {exc.details()}")
                    return
                if counting:
                    latencies.append(time.perf_counter() - t0)
                if expect is not None and response != expect:
                    errors.append(f"response of {len(response)} bytes differs from expected")
                    return

        tasks = [asyncio.create_task(caller()) for _ in range(concurrency)]
        await asyncio.sleep(warmup)
        counting = True
        started = time.perf_counter()
        await asyncio.sleep(duration)
        counting = False
        elapsed = time.perf_counter() - started
        stop = True
        await asyncio.gather(*tasks)
    if errors:
        raise Mismatch(errors[0])
    calls = len(latencies)
    lat = {k: v * 1000 for k, v in percentiles(latencies).items()}
    return {"calls": calls, "seconds": elapsed, "rps": calls / elapsed, "latency_ms": lat}


async def latency(
    target: str,
    method: str,
    requests: Sequence[bytes],
    expects: Sequence[bytes | None],
    *,
    iterations: int,
    warmup_iterations: int,
) -> dict[str, Any]:
    """Sequential calls alternating over ``requests``; percentiles per request in ms."""
    samples: list[list[float]] = [[] for _ in requests]
    async with grpc.aio.insecure_channel(target) as channel:
        call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(method)
        await asyncio.wait_for(channel.channel_ready(), 10)
        for n in range(warmup_iterations + iterations):
            for j, request in enumerate(requests):
                t0 = time.perf_counter()
                response = await call(request)
                elapsed = time.perf_counter() - t0
                if expects[j] is not None and response != expects[j]:
                    raise Mismatch(f"response {j} of {len(response)} bytes differs from expected")
                if n >= warmup_iterations:
                    samples[j].append(elapsed * 1000)
    return {"latency_ms": [percentiles(s) for s in samples], "iterations": iterations}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.loadgen", description=__doc__)
    sub = parser.add_subparsers(dest="mode", required=True)
    for mode in ("throughput", "latency"):
        p = sub.add_parser(mode)
        p.add_argument("--target", required=True, help="host:port")
        p.add_argument("--method", required=True, help="/package.Service/Method")
        p.add_argument("--request", type=Path, action="append", required=True)
        p.add_argument("--expect", type=Path, action="append", default=[])
    thr = sub.choices["throughput"]
    thr.add_argument("--concurrency", type=int, default=8)
    thr.add_argument("--duration", type=float, default=5.0)
    thr.add_argument("--warmup", type=float, default=1.0)
    lat = sub.choices["latency"]
    lat.add_argument("--iterations", type=int, default=200)
    lat.add_argument("--warmup-iterations", type=int, default=20)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs one measurement and prints its JSON result."""
    args = _parser().parse_args(argv)
    requests = [p.read_bytes() for p in args.request]
    expects: list[bytes | None] = [p.read_bytes() for p in args.expect]
    expects += [None] * (len(requests) - len(expects))
    if args.mode == "throughput":
        result = asyncio.run(
            throughput(
                args.target,
                args.method,
                requests[0],
                expects[0],
                concurrency=args.concurrency,
                duration=args.duration,
                warmup=args.warmup,
            )
        )
    else:
        result = asyncio.run(
            latency(
                args.target,
                args.method,
                requests,
                expects,
                iterations=args.iterations,
                warmup_iterations=args.warmup_iterations,
            )
        )
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
