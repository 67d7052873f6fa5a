"""Benchmark: CertLogic evaluations and validations per second over the conformance test suite."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout as a script

from firmware.credentials.certlogic import CertLogicError, evaluate, validate  # noqa: E402

DEFAULT_SUITE = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "certlogic" / "testSuite"


def load_pairs(suite: Path) -> list[tuple[Any, Any, bool]]:
    """(expression, data, reduce_with_data) for every runnable assertion of the suite."""
    pairs = []
    for path in sorted(suite.glob("*.json")):
        document = json.loads(path.read_text(encoding="utf-8"))
        patched = document.get("directive") == "skip"   # patched-reduce: run with the extension
        for case in document["cases"]:
            for assertion in case["assertions"]:
                if assertion.get("directive") == "skip":
                    continue
                expr = assertion.get("certLogicExpression", case.get("certLogicExpression"))
                pairs.append((expr, assertion["data"], patched))
    return pairs


def rate(work: Any, pairs: list[Any], min_seconds: float) -> tuple[float, int]:
    """Operations per second of `work` over all pairs, repeated for at least `min_seconds`."""
    done = 0
    start = time.perf_counter()
    while True:
        for pair in pairs:
            work(pair)
        done += len(pairs)
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return done / elapsed, done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--suite", type=Path, default=DEFAULT_SUITE, help="testSuite folder")
    parser.add_argument("--seconds", type=float, default=2.0, help="minimum time per figure")
    args = parser.parse_args(argv)
    pairs = load_pairs(args.suite)
    if not pairs:
        print(f"no test-suite files under {args.suite}", file=sys.stderr)
        return 2

    def run(pair: tuple[Any, Any, bool]) -> None:
        expr, data, patched = pair
        try:
            evaluate(expr, data, reduce_with_data=patched)
        except CertLogicError:
            pass   # none expected; counted as work all the same

    evaluations_per_s, evaluations = rate(run, pairs, args.seconds)
    validations_per_s, _ = rate(lambda pair: validate(pair[0]), pairs, args.seconds)
    minors = [pair for pair in pairs if "dccDateOfBirth" in json.dumps(pair[0])
              or "plusTime" in json.dumps(pair[0])]
    date_per_s, _ = rate(run, minors, args.seconds)
    figures = {
        "expressions": len(pairs),
        "evaluations": evaluations,
        "evaluations_per_s": round(evaluations_per_s),
        "mean_evaluation_us": round(1e6 / evaluations_per_s, 2),
        "date_time_evaluations_per_s": round(date_per_s),
        "validations_per_s": round(validations_per_s),
        "python": sys.version.split()[0],
    }
    print(f"CertLogic: {figures['evaluations_per_s']} evaluations/s over {len(pairs)} suite "
          f"expressions ({figures['mean_evaluation_us']} us each), "
          f"{figures['date_time_evaluations_per_s']}/s for date-time ones, "
          f"{figures['validations_per_s']} validations/s")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
