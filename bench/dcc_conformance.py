"""Per-folder pass rates of the EU DCC conformance run (../shared/data/dcc-testdata).

    .venv/bin/python bench/dcc_conformance.py
Prints a Markdown table (expectations met / checked per folder, and what known issues and our
own findings excuse) and, as its last line, one JSON object with the totals.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.test_conformance_dcc import _case_files, _case_id, case_outcome  # noqa: E402


def main() -> int:
    argparse.ArgumentParser(description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    if not _case_files():
        print("dcc-testdata not found", file=sys.stderr)
        return 1
    rows: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for path in _case_files():
        folder = _case_id(path).split("/")[0]
        outcome = case_outcome(path)
        row = rows[folder]
        row["cases"] += 1
        row["cases_all_met"] += all(problem is None for problem, _ in outcome.values())
        for problem, excuse in outcome.values():
            row["checked"] += 1
            if problem is None:
                row["met"] += 1
            elif excuse and excuse.startswith("known_issues"):
                row["known_issue"] += 1
            elif excuse:
                row["our_finding"] += 1
            else:
                row["failed"] += 1
    print("| folder | cases | cases fully met | expectations met / checked | pass rate | "
          "not met: known issue | not met: data finding | not met: unexplained |")
    print("|---|---|---|---|---|---|---|---|")
    totals: dict[str, int] = defaultdict(int)
    for folder in sorted(rows):
        row = rows[folder]
        for key, value in row.items():
            totals[key] += value
        print(f"| {folder} | {row['cases']} | {row['cases_all_met']} | {row['met']} / {row['checked']} | "
              f"{100 * row['met'] / row['checked']:.1f} % | {row['known_issue']} | {row['our_finding']} | "
              f"{row['failed']} |")
    print(f"| **all** | {totals['cases']} | {totals['cases_all_met']} | {totals['met']} / {totals['checked']} | "
          f"{100 * totals['met'] / totals['checked']:.1f} % | {totals['known_issue']} | "
          f"{totals['our_finding']} | {totals['failed']} |")
    print(json.dumps({"folders": len(rows), **totals,
                      "pass_rate": round(totals["met"] / totals["checked"], 4)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
