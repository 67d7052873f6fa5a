"""Time to refuse hostile CBOR (issue 15): shared-reference bombs inside correctly signed
credentials of every CBOR format, per input.

    .venv/bin/python bench/cbor_bounds.py [--repeats 5] [--max-depth 16]

For each format (DCC signed payload, DCC unprotected header, NZCP, status code, status record,
member gallery) and each fan-out 2..8, a list holding the same list fan-out times, nested 1..16
deep with CBOR value sharing (tags 28/29), is put into a correctly signed credential and checked.
Prints ms per refused input (median over depths and repeats, the worst run, and the slowest
input's fastest run, i.e. the work without scheduling noise), the peak Python
allocation (tracemalloc) of the worst input, and the refusal code; the tests assert only the
codes and the memory budget (no timing in tests/). Last line: one JSON object.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout as a script

from tests import cbor_attacks as attacks  # noqa: E402

# The target in issue 15 (a figure to compare with, never asserted).
TARGET_MS = 50.0


@dataclass
class Row:
    """One format's figures."""

    format: str
    inputs: int
    refused_all: bool
    codes: list[str]
    median_ms: float
    max_ms: float
    slowest_input_best_ms: float
    peak_alloc_kb: float


def measure(fmt: str, repeats: int, max_depth: int) -> Row:
    """Median and worst ms per refused input, the slowest input's best run, the worst peak
    allocation and the codes seen."""
    times: list[float] = []
    best: list[float] = []  # per input, its fastest run: the work without scheduling noise
    peaks: list[int] = []
    codes: set[str] = set()
    refused_all = True
    for fan_out in range(2, 9):
        for depth in range(1, max_depth + 1):
            # Built (and signed) once; only the check is timed.
            built = attacks.build_input(fmt, attacks.shared_list_bomb(fan_out, depth))
            outcome, peak = attacks.peak_bytes(lambda: attacks.check_input(fmt, built))
            peaks.append(peak)
            refused_all &= outcome.refused
            codes.add(str(outcome.code))
            runs = []
            for _ in range(repeats):
                start = time.perf_counter()
                attacks.check_input(fmt, built)
                runs.append((time.perf_counter() - start) * 1000.0)
            times.extend(runs)
            best.append(min(runs))
    return Row(fmt, len(peaks), refused_all, sorted(codes), round(statistics.median(times), 3),
               round(max(times), 3), round(max(best), 3), round(max(peaks) / 1024, 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per input")
    parser.add_argument("--max-depth", type=int, default=16, help="deepest nesting tried")
    args = parser.parse_args()
    rows = [measure(fmt, args.repeats, args.max_depth) for fmt in attacks.FORMATS]
    print(f"{'format':16} {'inputs':>6} {'median ms':>10} {'max ms':>8} {'slowest best':>13} "
          f"{'peak KiB':>9}  code")
    for row in rows:
        print(f"{row.format:16} {row.inputs:>6} {row.median_ms:>10} {row.max_ms:>8} "
              f"{row.slowest_input_best_ms:>13} {row.peak_alloc_kb:>9}  {','.join(row.codes)}")
    print(json.dumps({"benchmark": "cbor_bounds", "target_ms": TARGET_MS,
                      "worst_ms": max(row.max_ms for row in rows),
                      "slowest_input_best_ms": max(row.slowest_input_best_ms for row in rows),
                      "all_refused": all(row.refused_all for row in rows),
                      "peak_alloc_kb": max(row.peak_alloc_kb for row in rows),
                      "formats": [asdict(row) for row in rows]}))


if __name__ == "__main__":
    main()
