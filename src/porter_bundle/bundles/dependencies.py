"""CNAB dependencies (spec section 500, the ``io.cnab.dependencies`` custom extension): which
bundles a bundle depends on, in what order, and which of their versions it accepts.

Version ranges as the spec writes them: ``1.2.3`` (exact), ``1.2.x`` / ``1.x`` / ``x`` (``*``
too) wildcards, ``1.5.x - 3`` (from 1.5.0 up to but not including 4), with or without a leading
"v"; comparators (``>=1.2.0``, ``<2``; several in one range, space-separated, all apply) are
accepted too. A prerelease version only matches when ``prereleases`` is true.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

DEPENDENCIES = "io.cnab.dependencies"

_VERSION = re.compile(
    r"^v?(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?$"
)
_PARTIAL = re.compile(r"^v?(\d+|[xX*])(?:\.(\d+|[xX*]))?(?:\.(\d+|[xX*]))?(?:-([0-9A-Za-z.-]+))?$")
_COMPARATOR = re.compile(r"^(>=|<=|>|<|=)?\s*(.+)$")


@dataclass(frozen=True)
class Dependency:
    """One dependency: its alias in the parent, the bundle repository, acceptable versions."""

    alias: str
    bundle: str
    ranges: tuple[str, ...] = ()
    prereleases: bool = False

    def accepts(self, version: str) -> bool:
        """Whether ``version`` (semver, "v" optional) is acceptable."""
        return satisfies(version, self.ranges, prereleases=self.prereleases)

    @property
    def criteria(self) -> str:
        """The version criteria, for messages."""
        ranges = " || ".join(self.ranges) if self.ranges else "any version"
        return ranges + (", prereleases allowed" if self.prereleases else "")


class DependencyError(ValueError):
    """``io.cnab.dependencies`` is malformed; the message says where."""


def dependencies(doc: dict[str, Any]) -> list[Dependency]:
    """The bundle's dependencies in execution order: ``sequence`` first, then the others by
    alias. Empty when the bundle declares none; DependencyError when the extension is malformed."""
    declared = (doc.get("custom") or {}).get(DEPENDENCIES)
    if declared is None:
        return []
    if not isinstance(declared, dict):
        raise DependencyError(f"custom.{DEPENDENCIES} is not an object")
    requires = declared.get("requires") or {}
    sequence = declared.get("sequence") or []
    if not isinstance(requires, dict) or not isinstance(sequence, list):
        raise DependencyError(f"custom.{DEPENDENCIES}: requires must be an object, sequence a list")
    unknown = [alias for alias in sequence if alias not in requires]
    if unknown:
        raise DependencyError(f"custom.{DEPENDENCIES}.sequence names no dependency {unknown[0]!r}")
    order = [*dict.fromkeys(str(a) for a in sequence), *sorted(set(requires) - set(sequence))]
    found = []
    for alias in order:
        spec = requires[alias]
        where = f"custom.{DEPENDENCIES}.requires.{alias}"
        if not isinstance(spec, dict) or not isinstance(spec.get("bundle"), str):
            raise DependencyError(f"{where}.bundle must name a bundle (REGISTRY/NAME)")
        version = spec.get("version") or {}
        ranges = version.get("ranges") or [] if isinstance(version, dict) else []
        if not isinstance(ranges, list) or not all(isinstance(r, str) for r in ranges):
            raise DependencyError(f"{where}.version.ranges must be a list of strings")
        for r in ranges:
            try:
                satisfies("0.0.0", [r])
            except ValueError as exc:
                raise DependencyError(f"{where}.version.ranges: {exc}") from None
        prereleases = (
            bool(version.get("prereleases", False)) if isinstance(version, dict) else False
        )
        found.append(Dependency(alias, spec["bundle"], tuple(ranges), prereleases))
    return found


def parse_version(text: str) -> tuple[int, int, int, str] | None:
    """(major, minor, patch, prerelease) of a semver version ("v" optional), or None."""
    m = _VERSION.match(text.strip())
    if m is None:
        return None
    return int(m[1]), int(m[2]), int(m[3]), m[4] or ""


def version_key(text: str) -> tuple[int, int, int, int, tuple[Any, ...]]:
    """A sort key: semver precedence (a prerelease before its release); unparsable lowest."""
    parsed = parse_version(text)
    if parsed is None:
        return (-1, 0, 0, 0, ())
    major, minor, patch, pre = parsed
    parts = (
        tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in pre.split(".")) if pre else ()
    )
    return (major, minor, patch, 0 if pre else 1, parts)


def satisfies(version: str, ranges: Sequence[str], *, prereleases: bool = False) -> bool:
    """Whether ``version`` is in any of ``ranges`` (no ranges: any version). ValueError for a
    range that cannot be read."""
    parsed = parse_version(version)
    checks = [_range(r) for r in ranges]
    if parsed is None:
        return False
    if parsed[3] and not prereleases:
        return False
    key = version_key(version)[:3]
    return not checks or any(all(c(key) for c in check) for check in checks)


_Bound = tuple[int, int, int]


def _range(text: str) -> list[Any]:
    """The conditions of one range, each a function of (major, minor, patch)."""
    text = text.strip()
    if " - " in text:
        low, high = (part.strip() for part in text.split(" - ", 1))
        start, _ = _span(low)
        _, end = _span(high)
        return [lambda v: v >= start, lambda v: end is None or v < end]
    conditions: list[Any] = []
    for part in text.split():
        m = _COMPARATOR.match(part)
        if m is None:
            raise ValueError(f"cannot read version range {text!r}")
        op, operand = m[1] or "=", m[2]
        start, end = _span(operand)
        if op == "=":
            conditions += [lambda v, s=start: v >= s, lambda v, e=end: e is None or v < e]
        elif op == ">=":
            conditions.append(lambda v, s=start: v >= s)
        elif op == ">":
            conditions.append(lambda v, e=end: e is not None and v >= e)
        elif op == "<":
            conditions.append(lambda v, s=start: v < s)
        else:  # <=
            conditions.append(lambda v, e=end: e is None or v < e)
    if not conditions:
        raise ValueError(f"cannot read version range {text!r}")
    return conditions


def _span(text: str) -> tuple[_Bound, _Bound | None]:
    """The versions a partial version stands for: [start, end) (end None: unbounded)."""
    m = _PARTIAL.match(text)
    if m is None:
        raise ValueError(f"cannot read version {text!r}")
    parts = [m[1], m[2], m[3]]
    given: list[int] = []
    for p in parts:
        if p is None or p in ("x", "X", "*"):
            break
        given.append(int(p))
    start = [*given, 0, 0, 0][:3]
    if len(given) == 3:
        end = (given[0], given[1], given[2] + 1)
    elif len(given) == 2:
        end = (given[0], given[1] + 1, 0)
    elif len(given) == 1:
        end = (given[0] + 1, 0, 0)
    else:
        return (0, 0, 0), None
    return (start[0], start[1], start[2]), end


__all__ = [
    "DEPENDENCIES",
    "Dependency",
    "DependencyError",
    "dependencies",
    "parse_version",
    "satisfies",
    "version_key",
]
