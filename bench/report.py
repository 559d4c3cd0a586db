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


def write_results(
    directory: Path, figures: list[Figure], context: dict[str, Any]
) -> tuple[Path, Path]:
    """Writes latest.json and latest.md into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    data = {
        **context,
        "figures": [
            {**asdict(f), "passed": f.passed, "target_text": f.target_text} for f in figures
        ],
    }
    json_path = directory / "latest.json"
    json_path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    machine = context.get("machine", {})
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
        f"- data: {json.dumps(context.get('plan', {}))}",
        f"- seeding: {context.get('seed', {}).get('summary', '')}",
        "",
        "| figure | value | unit | target | result | note |",
        "| --- | ---: | --- | --- | --- | --- |",
    ]
    md += [
        f"| {f.name} | {_fmt(f.value)} | {f.unit} | {f.target_text} | {f.result_text} | {f.note} |"
        for f in figures
    ]
    md += ["", "Raw measurements (every round) are in `latest.json`.", ""]
    md_path = directory / "latest.md"
    md_path.write_text("\n".join(md))
    return json_path, md_path
