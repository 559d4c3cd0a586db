"""The Grafana dashboard in deploy/ queries only metrics the server has, and every one of them."""

from __future__ import annotations

import json
import re
from pathlib import Path

from porter_bundle.observability import Metrics

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "porter-bundle.json"
METRIC = re.compile(r"\b(?:grpc_server|porter_bundle)_[a-z_]+\b")


def served_names() -> dict[str, str]:
    """Each sample name the server's registry exposes -> its family."""
    names = {}
    for family in Metrics().registry.collect():
        suffixes = {
            "counter": ("_total",),
            "histogram": ("_bucket", "_count", "_sum"),
        }.get(family.type, ("",))
        for suffix in suffixes:
            names[family.name + suffix] = family.name
    return names


def test_the_dashboard_queries_each_metric_and_no_other():
    dashboard = json.loads(DASHBOARD.read_text())
    served = served_names()
    used: set[str] = set()
    ids = []
    for panel in dashboard["panels"]:
        ids.append(panel["id"])
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            for name in METRIC.findall(target["expr"]):
                assert name in served, f"{panel['title']}: {name} is not a metric of the server"
                used.add(served[name])
    assert len(ids) == len(set(ids))
    assert used == set(served.values())
