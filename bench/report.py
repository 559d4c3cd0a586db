"""Figures, their targets, and the table / JSON / Markdown the suite writes."""

from __future__ import annotations

import json
import os
import platform
import sqlite3
import subprocess
import sys
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from statistics import median
from typing import Any, Literal

from bench.procs import REPO


@dataclass(frozen=True)
class Figure:
    """One measured number; with a target it passes or misses, without one it is context."""

    name: str
    value: float
    unit: str = ""
    target: float | None = None
    goal: Literal["min", "max"] = "min"
    """"min": value must be at least the target; "max": at most."""
    note: str = ""
    benchmark: str = ""
    """Which benchmark (``--only`` name) measured it; ``start`` for the seeded server's start."""

    @property
    def passed(self) -> bool | None:
        """True/False against the target, None without one."""
        if self.target is None:
            return None
        return self.value >= self.target if self.goal == "min" else self.value <= self.target

    @property
    def target_text(self) -> str:
        """The target as a condition, e.g. ">= 0.4"."""
        if self.target is None:
            return ""
        return f"{'>=' if self.goal == 'min' else '<='} {_fmt(self.target)}"

    @property
    def result_text(self) -> str:
        """ "pass", "MISS" or "" (context)."""
        return {True: "pass", False: "MISS", None: ""}[self.passed]


def action_figures(
    name: str,
    target: float,
    note: str,
    real: list[float],
    bare: list[float],
    stamps: list[dict[str, float]],
) -> list[Figure]:
    """The figures of an action against bare ``podman run``: the ratio of the medians (with
    its target), both medians, and the server's own stamps (``queued``, ``running``)."""
    real_ms, bare_ms = median(real) * 1000, median(bare) * 1000
    return [
        Figure(name, real_ms / bare_ms, "x", target, "max", note),
        Figure("  porter-bundle ExecuteAction to SUCCEEDED", real_ms, "ms"),
        Figure("  podman run --rm, same env and files", bare_ms, "ms"),
        Figure(
            "  server stamps: created to started",
            median(s["queued"] for s in stamps) * 1000,
            "ms",
            note="context: median",
        ),
        Figure(
            "  server stamps: started to completed",
            median(s["running"] for s in stamps) * 1000,
            "ms",
            note="context: median",
        ),
    ]


def _fmt(value: float) -> str:
    if value == int(value) and abs(value) >= 10:
        return f"{int(value):,}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}" if abs(value) < 1 else f"{value:.2f}"


def table(figures: list[Figure]) -> str:
    """A fixed-width text table of figures."""
    rows = [("figure", "value", "unit", "target", "result")]
    rows += [(f.name, _fmt(f.value), f.unit, f.target_text, f.result_text) for f in figures]
    widths = [max(len(r[c]) for r in rows) for c in range(5)]
    lines = []
    for n, r in enumerate(rows):
        cells = [r[0].ljust(widths[0]), r[1].rjust(widths[1])]
        cells += [r[c].ljust(widths[c]) for c in (2, 3, 4)]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def machine_facts() -> dict[str, Any]:
    """What the numbers were measured on."""

    def git(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", *args], cwd=REPO, capture_output=True, text=True, check=True
            ).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return ""

    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "python": sys.version.split()[0],
        "grpcio": metadata.version("grpcio"),
        "protobuf": metadata.version("protobuf"),
        "sqlalchemy": metadata.version("sqlalchemy"),
        "sqlite": sqlite3.sqlite_version,
        "platform": platform.platform(),
        "git_commit": git("rev-parse", "--short", "HEAD"),
        "git_dirty": bool(git("status", "--porcelain", "--", "src", "proto", "gen")),
    }


ORDER = ("rss", "list", "depth", "latest", "start", "actions")
"""Where each benchmark's figures go in a file that merges runs."""
_LEGACY_HEADLINES = {
    "Server RSS": "rss",
    "Server peak RSS": "rss",
    "ListInstallations": "list",
    "Depth": "depth",
    "Latest": "latest",
    "Server start": "start",
}


def _earlier_figures(previous: dict[str, Any]) -> list[dict[str, Any]]:
    """The figures of an earlier latest.json, each with its benchmark and when it was measured.

    Files written before figures carried their benchmark get it from their headline: an
    indented figure belongs to the headline above it.
    """
    machine = previous.get("machine", {})
    stamp = {
        "date": machine.get("date"),
        "command": previous.get("command"),
        "load_average": machine.get("load_average"),
    }
    out, group = [], ""
    for f in previous.get("figures", []):
        if not f.get("benchmark"):
            if not f["name"].startswith(" "):
                group = next(
                    (g for p, g in _LEGACY_HEADLINES.items() if f["name"].startswith(p)), ""
                )
            f = {**f, "benchmark": group}
        out.append({**f, "measured": f.get("measured") or stamp})
    return out


def write_results(
    directory: Path,
    figures: list[Figure],
    context: dict[str, Any],
    ran: list[str] | None = None,
) -> tuple[Path, Path]:
    """Writes latest.json and latest.md into ``directory``.

    With ``ran`` (the benchmarks of this run), the figures of other benchmarks already in
    latest.json are kept, each with the date and command of the run that measured it, so
    ``--only actions`` adds to the last full run's file instead of replacing it. Without it
    the file holds this run alone.
    """
    directory.mkdir(parents=True, exist_ok=True)
    json_path = directory / "latest.json"
    machine = context.get("machine", {})
    stamp = {
        "date": machine.get("date"),
        "command": context.get("command"),
        "load_average": machine.get("load_average"),
    }
    rows = [
        {**asdict(f), "passed": f.passed, "target_text": f.target_text, "measured": stamp}
        for f in figures
    ]
    previous: dict[str, Any] = {}
    if ran is not None and json_path.exists():
        try:
            previous = json.loads(json_path.read_text())
        except ValueError:
            previous = {}
    kept = [f for f in _earlier_figures(previous) if f["benchmark"] not in (ran or [])]
    data = dict(context)
    if kept:
        rank = {name: n for n, name in enumerate(ORDER)}
        rows = sorted(kept + rows, key=lambda f: rank.get(f["benchmark"], len(ORDER)))
        # What explains the kept figures (plan, seeding, settings, raw rounds) stays too.
        for key, value in previous.items():
            if key not in data and key not in ("figures", "details"):
                data[key] = value
        data["details"] = {**previous.get("details", {}), **context.get("details", {})}
    data["figures"] = rows
    json_path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    md = [
        "# porter-bundle benchmark: latest results",
        "",
        f"- date: {machine.get('date', '')}",
        f"- machine: {machine.get('nproc')} CPUs, {machine.get('platform', '')}, "
        f"load average at start {machine.get('load_average')}",
        f"- python {machine.get('python')}, grpcio {machine.get('grpcio')}, "
        f"protobuf {machine.get('protobuf')}, SQLite {machine.get('sqlite')}",
        f"- code: {machine.get('git_commit')}"
        + (" with uncommitted changes in src/proto/gen" if machine.get("git_dirty") else ""),
        f"- command: `{context.get('command', '')}`",
    ]
    if data.get("plan"):
        md.append(f"- data: {json.dumps(data['plan'])}")
    if data.get("seed"):
        md.append(f"- seeding: {data['seed'].get('summary', '')}")
    earlier: dict[str, list[str]] = {}
    for f in kept:
        m = f["measured"]
        when = (
            f"{m.get('date')}, `{m.get('command')}`, load average at start {m.get('load_average')}"
        )
        if f["benchmark"] not in earlier.setdefault(when, []):
            earlier[when].append(f["benchmark"])
    for when, groups in earlier.items():
        md.append(f"- kept from an earlier run ({', '.join(groups)}): {when}")
    md += [
        "",
        "| figure | value | unit | target | result | note |",
        "| --- | ---: | --- | --- | --- | --- |",
    ]
    for f in rows:
        note = f["note"]
        if f["measured"] != stamp:
            note = f"{note}; " if note else ""
            note += f"earlier run ({f['measured'].get('date')})"
        target = f.get("target_text", "")
        result = {True: "pass", False: "MISS", None: ""}[f.get("passed")]
        md.append(
            f"| {f['name']} | {_fmt(f['value'])} | {f['unit']} | {target} | {result} | {note} |"
        )
    md += ["", "Raw measurements (every round) are in `latest.json`.", ""]
    md_path = directory / "latest.md"
    md_path.write_text("\n".join(md))
    return json_path, md_path
