"""What the seeded database holds: a deterministic plan of installations, runs and outputs.

The plan is pure data: the same sizes always give the same installations, the same
run counts, the same interleaving of runs in time and the same run outcomes. Both the
bulk seeder (:mod:`bench.seed`) and the self-check that replays a small plan through
the real services (:mod:`bench.seedcheck`) read it, so their rows can be compared.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from google.protobuf.struct_pb2 import Struct

from porter.bundle.v1.installation_pb2 import BundleReference, Installation
from porter.bundle.v1.run_pb2 import (
    ACTION_INSTALL,
    ACTION_INVOKE,
    ACTION_UNINSTALL,
    ACTION_UPGRADE,
    RUN_STATE_FAILED,
    RUN_STATE_SUCCEEDED,
)
from porter_bundle.service.runs import NewRun, OutputValue

ZERO_RUN_EVERY = 25
"""Every 25th installation never ran (stays DEFINED)."""
UNINSTALLED_EVERY = 20
"""Every 20th installation ends with a successful uninstall."""
FAILED_INSTALL_EVERY = 50
"""Every 50th installation's first install failed."""
REGIONS = ("eu-west-1", "us-east-1", "ap-south-1")
ENVIRONMENTS = ("dev", "staging", "prod")
FAILURE_MESSAGE = "exit status 1: mixin exec failed: helm upgrade returned 1"


@dataclass(frozen=True)
class RunOutcome:
    """How one planned run ends: what the executor passes to ``RunService.finish``."""

    state: int
    message: str
    outputs: tuple[OutputValue, ...]


@dataclass(frozen=True)
class Plan:
    """Sizes of the seeded database and the deterministic rules that fill it."""

    installations: int = 100_000
    """Installations in total, spread round-robin over ``namespaces``."""
    runs: int = 1_000_000
    """Runs in total, over every installation."""
    namespaces: int = 50
    """Namespaces ``ns-00`` ... ``ns-NN``."""
    heavy_runs: int = 10_000
    """Runs of the one installation that the "latest" benchmark calls heavy."""
    seed: int = 20261122
    """Seed of the pseudo-random interleaving of runs in time."""

    def __post_init__(self) -> None:
        if self.installations < 30:
            raise ValueError("a plan needs at least 30 installations")
        if self.runs < self.heavy_runs + self.installations:
            raise ValueError("a plan needs at least heavy_runs + installations runs")

    # --- installations ----------------------------------------------------------

    @property
    def heavy_index(self) -> int:
        """Index of the installation with ``heavy_runs`` runs."""
        return self.installations // 2

    @property
    def single_index(self) -> int:
        """Index of the installation with exactly one (successful) run."""
        return self.installations // 2 + 1

    def address(self, i: int) -> tuple[str, str]:
        """(namespace, name) of installation ``i``."""
        return f"ns-{i % self.namespaces:02d}", f"app-{i:06d}"

    def installation(self, i: int) -> Installation:
        """What a client sends to CreateInstallation for installation ``i``."""
        namespace, name = self.address(i)
        params = Struct()
        params.update({"logLevel": i % 5, "region": REGIONS[i % len(REGIONS)]})
        return Installation(
            namespace=namespace,
            name=name,
            labels={
                "app.kubernetes.io/name": f"app-{i % 97}",
                "team": f"team-{i % 8}",
                "env": ENVIRONMENTS[i % len(ENVIRONMENTS)],
            },
            bundle=BundleReference(
                repository=f"registry.example.com/bundles/b{i % 20}", version="1.4.2"
            ),
            credential_sets=["cloud-creds"],
            parameters=params,
        )

    @cached_property
    def run_counts(self) -> list[int]:
        """How many runs each installation has; sums to ``runs``."""
        counts = [0] * self.installations
        counts[self.heavy_index] = self.heavy_runs
        counts[self.single_index] = 1
        eligible = [
            i
            for i in range(self.installations)
            if i not in (self.heavy_index, self.single_index) and i % ZERO_RUN_EVERY != 0
        ]
        base, extra = divmod(self.runs - self.heavy_runs - 1, len(eligible))
        # Vary the counts by -spread..+spread in whole cycles, which keeps the sum exact.
        spread = max(0, min(4, base - 1))
        width = 2 * spread + 1
        whole = len(eligible) - len(eligible) % width
        for j, i in enumerate(eligible):
            offset = (j % width) - spread if j < whole else 0
            counts[i] = base + offset + (1 if j < extra else 0)
        assert sum(counts) == self.runs
        return counts

    # --- runs ---------------------------------------------------------------------

    def schedule(self) -> list[int]:
        """Installation index of every run, in the order the runs happen.

        Each installation's runs are spread evenly over the whole time span, with a random
        phase, so the runs of the heavy installation are interleaved with everybody else's.
        """
        rng = random.Random(self.seed)
        keyed: list[tuple[float, int]] = []
        for i, n in enumerate(self.run_counts):
            phase = rng.random()
            keyed.extend(((k + phase) / n, i) for k in range(n))
        keyed.sort()
        return [i for _, i in keyed]

    def new_run(self, i: int, k: int) -> NewRun:
        """What the caller of ``RunService.create`` asks for as run ``k`` of installation ``i``."""
        action, custom = self._action(i, k)
        return NewRun(
            action=action,
            custom_action=custom,
            bundle_reference=_BUNDLE_REFERENCES[i % len(_BUNDLE_REFERENCES)],
            bundle_digest=_BUNDLE_DIGESTS[i % len(_BUNDLE_DIGESTS)],
            bundle_version="1.4.2",
            parameters=_RUN_PARAMETERS[i % len(_RUN_PARAMETERS)],
            sensitive_parameters=_SENSITIVE,
            credential_sets=("cloud-creds",),
            request_id=f"req-{i}-{k}" if k % 4 == 0 else "",
        )

    def outcome(self, i: int, k: int) -> RunOutcome:
        """How run ``k`` of installation ``i`` finishes."""
        action, _ = self._action(i, k)
        n = self.run_counts[i]
        if i == self.heavy_index and k >= n - 3:
            failed = True  # "latest" has to look past the newest runs
        elif k == 0:
            failed = i % FAILED_INSTALL_EVERY == 7
        elif action == ACTION_UNINSTALL:
            failed = False
        else:
            failed = (i + 3 * k) % 11 == 0
        if failed:
            return RunOutcome(RUN_STATE_FAILED, FAILURE_MESSAGE, ())
        if action == ACTION_UNINSTALL:
            return RunOutcome(RUN_STATE_SUCCEEDED, "", ())
        namespace, name = self.address(i)
        outputs = (
            OutputValue(
                "connection-string",
                f"postgresql://{name}.{namespace}.svc.cluster.local:5432/app",
                "string",
            ),
            OutputValue("admin-password", f"pw-{i:06d}", "string", sensitive=True),
        )
        return RunOutcome(RUN_STATE_SUCCEEDED, "", outputs)

    def _action(self, i: int, k: int) -> tuple[int, str]:
        n = self.run_counts[i]
        if k == 0:
            return ACTION_INSTALL, ""
        if i == self.heavy_index and k >= n - 3:
            return ACTION_INVOKE, "status"
        if k == n - 1 and i % UNINSTALLED_EVERY == UNINSTALLED_EVERY - 1:
            return ACTION_UNINSTALL, ""
        if (i * 31 + k * 17) % 10 < 6:
            return ACTION_UPGRADE, ""
        return ACTION_INVOKE, "status"

    # --- facts for the benchmarks -------------------------------------------------

    def key(self) -> dict[str, Any]:
        """The sizes, as stored in results and cache keys."""
        return {
            "installations": self.installations,
            "runs": self.runs,
            "namespaces": self.namespaces,
            "heavy_runs": self.heavy_runs,
            "seed": self.seed,
        }


# What runs are created with; shared, immutable-by-convention objects keep planning cheap.
_BUNDLE_REFERENCES = tuple(f"registry.example.com/bundles/b{b}:v1.4.2" for b in range(20))
_BUNDLE_DIGESTS = tuple("sha256:" + f"{b:02d}" * 32 for b in range(20))
_RUN_PARAMETERS: tuple[dict[str, Any], ...] = tuple(
    {"logLevel": v % 5, "region": REGIONS[v % len(REGIONS)], "db-password": "s3cr3t"}
    for v in range(5 * len(REGIONS))
)
_SENSITIVE = frozenset({"db-password"})
