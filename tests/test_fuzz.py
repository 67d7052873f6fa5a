"""Coverage-guided fuzzing in CI: a small, fixed budget of every parser (bench/fuzz.py runs the
large one). Bounded by a count of inputs and a fixed seed, never by time."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from firmware.credentials.verdict import Verdict, empty_checks
from tests import fuzz_targets
from tests.fuzz_targets import TARGETS, BoundExceeded

ROOT = Path(__file__).resolve().parent.parent
CI_RUNS_PER_TARGET = 300  # a few hundred inputs per parser: seconds on a loaded machine
CI_SEED = 1


def test_every_parser_has_a_target_and_seeds_that_pass() -> None:
    assert {"dcc", "dcc-cose", "shc", "shc-jws", "nzcp", "nzcp-cose", "status", "status-cose",
            "cbor", "base45", "containers"} <= set(TARGETS)
    for target in TARGETS.values():
        seeds = target.seeds()
        assert seeds, target.name
        for data in seeds:  # valid credentials and the attack constructions: no finding
            target.run(data)


def _verdict(valid: bool, failure: str | None) -> Verdict:
    return Verdict(valid=valid, format="dcc", failure=failure, payload=None,
                   checks=empty_checks(), credential_id=None, extras={})


@pytest.mark.parametrize(("valid", "failure"), [
    (False, "INTERNAL_ERROR"),  # verify() caught an exception of a verifier: a bug
    (False, "NOT_A_REASON"),  # a code the display has no message for
])
def test_a_verdict_that_breaks_the_contract_is_a_finding(valid: bool, failure: str | None) -> None:
    with pytest.raises(BoundExceeded):
        fuzz_targets._check_verdict(_verdict(valid, failure))


def test_a_cbor_value_past_the_bound_is_a_finding() -> None:
    deep: object = 0
    for _ in range(fuzz_targets.CBOR_MAX_DEPTH):
        deep = [deep]
    assert fuzz_targets._decoded_within(deep, fuzz_targets.CBOR_MAX_NODES,
                                        fuzz_targets.CBOR_MAX_DEPTH)
    assert not fuzz_targets._decoded_within([deep], fuzz_targets.CBOR_MAX_NODES,
                                            fuzz_targets.CBOR_MAX_DEPTH)


def test_small_fuzz_budget_finds_nothing() -> None:
    pytest.importorskip("atheris")
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "fuzz.py"),
                           "--runs", str(CI_RUNS_PER_TARGET), "--seed", str(CI_SEED)],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["unique_crashes"] == 0, done.stdout
    assert summary["inputs"] == CI_RUNS_PER_TARGET * len(TARGETS), done.stdout
    assert done.returncode == 0, done.stderr[-2000:]
