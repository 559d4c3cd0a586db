"""``python -m bench``: seed (or reuse) a database, start the servers, measure, report.

``actions`` needs no seeded database: it runs bundle actions on a private Podman engine.

See bench/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import actions, postgres, streams, suite
from bench.plan import Plan
from bench.procs import REPO, MemorySampler, start_porter_bundle
from bench.report import Figure, machine_facts, table, write_results
from bench.seed import default_cache_dir, seeded_database
from bench.seedcheck import check_seeder

BENCHMARKS = ("list", "depth", "latest", "rss", "metrics", "actions", "streams", "replicas")
SEEDED = ("list", "depth", "latest", "rss", "metrics")
"""The benchmarks on the seeded database (``actions`` has a fresh one and a container engine)."""
FULL = Plan()
QUICK = Plan(installations=5_000, runs=50_000)
RESULTS = REPO / "bench" / "results"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--quick", action="store_true", help="small data and short rounds (a smoke run)")
    p.add_argument(
        "--only",
        action="append",
        choices=BENCHMARKS,
        help="run only this benchmark (repeatable); default: all",
    )
    p.add_argument("--installations", type=int, help="override the plan's installations")
    p.add_argument("--runs", type=int, help="override the plan's runs")
    p.add_argument("--concurrency", type=int, default=8, help="concurrent callers (list)")
    p.add_argument("--duration", type=float, help="seconds measured per round (list)")
    p.add_argument("--rounds", type=int, help="A/B rounds per list benchmark")
    p.add_argument("--iterations", type=int, help="calls per request (latency benchmarks)")
    p.add_argument(
        "--action-samples", type=int, help="single actions per side (actions; default 15)"
    )
    p.add_argument(
        "--max-concurrent-runs",
        type=int,
        action="append",
        help="the server's limit for the batch of actions (repeatable; default 4 and 8)",
    )
    p.add_argument(
        "--streams", type=int, help="live streams at once (streams; default 1000, --quick 200)"
    )
    p.add_argument(
        "--postgres",
        default=os.environ.get("PORTER_BUNDLE_BENCH_POSTGRES", ""),
        metavar="URL",
        help="a PostgreSQL server (a superuser's URL) for `replicas` (default "
        "$PORTER_BUNDLE_BENCH_POSTGRES, which `make bench` sets); without one it is skipped",
    )
    p.add_argument("--cache-dir", type=Path, default=default_cache_dir(), help="seeded databases")
    p.add_argument("--no-cache", action="store_true", help="seed anew even when cached")
    p.add_argument("--results", type=Path, default=RESULTS, help="where latest.* go")
    return p


def _shown(path: Path) -> str:
    """A path relative to the repository when inside it."""
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def _log(message: str) -> None:
    print(message, flush=True)


def _tagged(benchmark: str, figures: list[Figure]) -> list[Figure]:
    return [dataclasses.replace(f, benchmark=benchmark) for f in figures]


def _seeded(
    args: argparse.Namespace,
    plan: Plan,
    settings: suite.Settings,
    selected: tuple[str, ...],
    context: dict[str, Any],
) -> list[Figure]:
    """The benchmarks on the seeded database: seed check, seeding, one server, figures."""
    selected = tuple(b for b in selected if b in SEEDED)
    context["plan"] = plan.key()
    t0 = time.perf_counter()
    rows = check_seeder()
    _log(f"seed check: bulk rows identical to the services' ({time.perf_counter() - t0:.1f}s)")
    context["seed_check_rows"] = rows

    _log(f"seeding {plan.installations:,} installations and {plan.runs:,} runs ...")
    seeded = seeded_database(
        plan, args.cache_dir, use_cache=not args.no_cache, progress=lambda m: _log("  " + m)
    )
    size_mb = seeded.path.stat().st_size / 2**20
    if seeded.stats is None:
        summary = f"reused cached {seeded.path} ({size_mb:,.0f} MiB)"
    else:
        st = seeded.stats
        phases = ", ".join(f"{k} {v:.1f}s" for k, v in st.phases.items())
        summary = (
            f"seeded in {st.seconds:.1f}s: {st.installations:,} installations, "
            f"{st.runs:,} runs, {st.outputs:,} outputs, {size_mb:,.0f} MiB ({phases})"
        )
    _log(summary)
    context["seed"] = {
        "summary": summary,
        "path": str(seeded.path),
        "cached": seeded.cached,
        "seconds": None if seeded.stats is None else seeded.stats.seconds,
        "mib": size_mb,
    }

    work = args.results / "tmp"
    work.mkdir(parents=True, exist_ok=True)
    server = start_porter_bundle(seeded.url, work / "porter-bundle.log")
    _log(f"porter-bundle started in {server.started_seconds:.1f}s on port {server.port}")
    ctx = suite.Context(plan, server, work, settings, _log)
    figures: list[Figure] = []
    try:
        suite.warm_up(ctx)
        if "rss" in selected:
            figures += _tagged("rss", [suite.rss_after_warmup(ctx)])
        with MemorySampler(server.pid) as sampler:
            if "list" in selected:
                _log("list: ListInstallations throughput vs bare grpcio")
                figures += _tagged("list", suite.bench_list(ctx, 100) + suite.bench_list(ctx, 10))
            if "depth" in selected:
                _log("depth: deep page vs first page")
                figures += _tagged("depth", suite.bench_depth(ctx))
            if "latest" in selected:
                _log('latest: outputs of "latest", many runs vs one')
                figures += _tagged("latest", suite.bench_latest(ctx))
            if selected == ("rss",):
                suite.load_for_memory(ctx)
        if "metrics" in selected:
            _log("metrics: ListInstallations throughput with --metrics-address vs without")
            # Two new servers, alike but for the flag (the suite's has served every benchmark).
            off = start_porter_bundle(seeded.url, work / "porter-bundle-metrics-off.log")
            on = start_porter_bundle(
                seeded.url,
                work / "porter-bundle-metrics-on.log",
                "--metrics-address",
                "127.0.0.1:0",
            )
            try:
                figures += _tagged("metrics", suite.bench_metrics(ctx, off, on))
            finally:
                off.stop()
                on.stop()
        if "rss" in selected:
            figures += _tagged("rss", [suite.rss_peak(ctx, sampler)])
    finally:
        server.stop()
    start = Figure("Server start on the seeded database", server.started_seconds, "s")
    figures += _tagged("start", [dataclasses.replace(start, note="context")])
    context["details"] = ctx.details
    return figures


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the suite; exit status 1 when a figure misses its target."""
    args = _parser().parse_args(argv)
    base = QUICK if args.quick else FULL
    plan = Plan(
        installations=args.installations or base.installations,
        runs=args.runs or base.runs,
        namespaces=base.namespaces,
        heavy_runs=base.heavy_runs,
    )
    settings = suite.Settings(
        concurrency=args.concurrency,
        duration=args.duration or (2.0 if args.quick else 5.0),
        warmup=0.5 if args.quick else 1.0,
        rounds=args.rounds or (2 if args.quick else 3),
        latency_iterations=args.iterations or (50 if args.quick else 200),
    )
    selected = tuple(b for b in BENCHMARKS if b in (args.only or BENCHMARKS))
    context: dict[str, Any] = {
        "command": shlex.join(["python", "-m", "bench", *(argv or sys.argv[1:])]),
        "machine": machine_facts(),
    }
    _log(f"machine: {context['machine']}")
    figures: list[Figure] = []
    ran: list[str] = []
    if any(b in SEEDED for b in selected):
        figures += _seeded(args, plan, settings, selected, context)
        ran += [*(b for b in selected if b in SEEDED), "start"]
        context["settings"] = dataclasses.asdict(settings)
    missing = actions.missing_tools() if "actions" in selected else []
    if missing and args.only:
        raise SystemExit(f"actions: {', '.join(missing)} not installed (make test installs them)")
    if missing:
        _log(f"actions: skipped, {', '.join(missing)} not installed (make test installs them)")
    elif "actions" in selected:
        action_settings = actions.ActionSettings(
            samples=args.action_samples or (10 if args.quick else 15),
            max_concurrent_runs=tuple(
                args.max_concurrent_runs
                or ((actions.DEFAULT_MAX_CONCURRENT_RUNS,) if args.quick else (4, 8))
            ),
        )
        _log("actions: ExecuteAction to SUCCEEDED vs bare podman run")
        found, details = actions.bench_actions(
            args.results / "tmp" / "actions", action_settings, _log
        )
        figures += _tagged("actions", found)
        context.setdefault("details", {}).update(details)
        context["action_settings"] = dataclasses.asdict(action_settings)
        ran.append("actions")
    if "streams" in selected:
        missing = actions.missing_tools()
        if missing:
            _log(f"streams: skipped, {', '.join(missing)} not installed (make test installs them)")
        else:
            stream_settings = streams.StreamSettings(
                streams=args.streams or (200 if args.quick else 1000)
            )
            _log(
                f"streams: {stream_settings.streams:,} live streams, log latency vs podman logs -f"
            )
            found, details = streams.bench_streams(
                args.results / "tmp" / "streams", stream_settings, _log
            )
            figures += _tagged("streams", found)
            context.setdefault("details", {})["streams"] = details
            context["stream_settings"] = dataclasses.asdict(stream_settings)
            ran.append("streams")
    if "replicas" in selected and not args.postgres:
        _log("replicas: skipped, no --postgres URL (make bench gives one)")
    elif "replicas" in selected:
        _log(f"replicas: {postgres.REPLICAS} replicas vs 1 on one PostgreSQL, ListInstallations")
        found, details = postgres.bench_replicas_on(
            args.postgres, args.results / "tmp" / "replicas", settings, _log
        )
        figures += _tagged("replicas", found)
        context.setdefault("details", {})["replicas"] = details
        ran.append("replicas")
    _log("")
    _log(table(figures))
    json_path, md_path = write_results(args.results, figures, context, ran)
    _log(f"\nwrote {_shown(json_path)} and {_shown(md_path)}")
    return 1 if any(f.passed is False for f in figures) else 0


if __name__ == "__main__":
    raise SystemExit(main())
