"""The fuzzer (tests/fuzz.py) in `make test`: a few hundred seeded cases over every method of
both services find no UNKNOWN, INTERNAL, RESOURCE_EXHAUSTED or hang (`make fuzz` runs more)."""

from __future__ import annotations

import os

from tests import fuzz
from tests.fuzz_server import fuzz_server

CASES = int(os.environ.get("PORTER_BUNDLE_FUZZ_CASES", "400"))
SEED = int(os.environ.get("PORTER_BUNDLE_FUZZ_SEED", "13"))


def test_the_fuzzer_reaches_every_method_of_both_services():
    paths = {m.path for m in fuzz.methods()}
    assert any(p.startswith("/porter.v1alpha1.Porter/") for p in paths)
    assert "/porter.bundle.v1.PorterBundle/ExecuteAction" in paths
    made = {method.path for method, _, _ in fuzz.iter_cases(SEED, 3000)}
    assert made == paths
    hows = {how for _, how, _ in fuzz.iter_cases(SEED, 200)}
    assert hows == {"random", "mutated", "generated"}
    assert list(fuzz.iter_cases(SEED, 20)) == list(fuzz.iter_cases(SEED, 20))  # seeded


def test_hostile_requests_never_get_unknown_internal_or_hang():
    with fuzz_server() as target:
        report = fuzz.run(target, CASES, SEED)
    assert report.cases == CASES
    assert not report.failures, "\n".join([report.summary(), *report.failures[:20]])
    assert report.codes["INVALID_ARGUMENT"] and report.codes["OK"]  # both kinds were reached
