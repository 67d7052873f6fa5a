"""Differential check against the reference JavaScript engine (certlogic-js), when available.

Runs only with `CERTLOGIC_JS=/path/to/node_modules/certlogic-js` and `node` on PATH (e.g.
`npm install certlogic-js@1.2.2` in a scratch folder): the project itself never needs Node.
Random valid expressions over every date-time shape, every plusTime unit and large offsets;
both engines must agree on each value, or both raise. Invalid calendar dates (2021-02-30) are
left out: the spec calls them undefined, JavaScript rolls them over, this engine raises.
"""
from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from firmware.credentials.certlogic import CertLogicError, DateTime, evaluate, validate_issues

CERTLOGIC_JS = os.environ.get("CERTLOGIC_JS", "")

_RUNNER = """
const { evaluate } = require(process.argv[1]);  // node -e CODE ARG: ARG is argv[1]
const lines = require("fs").readFileSync(0, "utf8").split("\\n").filter(Boolean);
const conv = (x) => x instanceof Date ? (isNaN(x.getTime()) ? "InvalidDate" : "DT:" + x.toISOString())
  : Array.isArray(x) ? x.map(conv) : x;
for (const line of lines) {
  const { expr, data } = JSON.parse(line);
  let out;
  try { out = { ok: true, value: conv(evaluate(expr, data)) }; }
  catch (e) { out = { ok: false }; }
  process.stdout.write(JSON.stringify(out) + "\\n");
}
"""


_VALIDATION_RUNNER = """
const { validate } = require(require("path").join(process.argv[1], "dist", "validation"));
const lines = require("fs").readFileSync(0, "utf8").split("\\n").filter(Boolean);
for (const line of lines) {
  const issues = validate(JSON.parse(line)).map((issue) => [issue.expr, issue.message]);
  process.stdout.write(JSON.stringify(issues) + "\\n");
}
"""

_NEEDS_JS = pytest.mark.skipif(
    not (CERTLOGIC_JS and Path(CERTLOGIC_JS).is_dir() and shutil.which("node")),
    reason="set CERTLOGIC_JS to an installed certlogic-js and put node on PATH")


def _node(script: str, lines: list[Any]) -> list[Any]:
    completed = subprocess.run(
        ["node", "-e", script, str(Path(CERTLOGIC_JS).resolve())],
        input="".join(json.dumps(line) + "\n" for line in lines),
        capture_output=True, text=True, timeout=120, check=True)
    return [json.loads(line) for line in completed.stdout.splitlines()]


class _Generator:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def date_text(self) -> str:
        rng = self.rng
        year = rng.choice([1, 1900, 1970, 2000, 2004, 2020, 2021, 2024, 2100, 9999])
        month = rng.choice([1, 2, 3, 6, 11, 12])
        last = [31, 29 if year % 4 == 0 and (year % 100 or year % 400 == 0) else 28,
                31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1]
        day = rng.choice([1, 15, 28, last])
        shape = rng.randrange(6)
        if shape == 0:
            return f"{year:04d}"
        if shape == 1:
            return f"{year:04d}-{month:02d}"
        text = f"{year:04d}-{month:02d}-{day:02d}"
        if shape == 2:
            return text
        return (text + f"T{rng.randrange(24):02d}:{rng.randrange(60):02d}:{rng.randrange(60):02d}"
                + rng.choice(["", ".5", ".123", ".1234567", ".0"])
                + rng.choice(["", "Z", "+2", "+02", "+230", "+0230", "+2:30", "+02:30", "-5",
                              "-0530", "-11:45", "+14:00"]))

    def date_time(self) -> dict[str, Any]:
        rng = self.rng
        if rng.random() < 0.3:
            return {"dccDateOfBirth": [self.date_text()[:rng.choice([4, 7, 10])]]}
        return {"plusTime": [rng.choice([self.date_text(), {"var": "d"}]),
                             rng.choice([0, 1, -1, 12, -18, 29, 365, -700, 100_000]),
                             rng.choice(["year", "month", "day", "hour"])]}

    def integer(self) -> Any:
        rng = self.rng
        return rng.choice([rng.randint(-3, 3), {"+": [rng.randint(-3, 3), {"var": "a"}]},
                           {"var": rng.choice(["a", "arr.0", "arr.2"])}])

    def expression(self, depth: int = 0) -> Any:
        rng = self.rng
        kind = rng.randrange(9 if depth < 3 else 3)
        if kind == 0:
            return {rng.choice(["after", "before", "not-after", "not-before"]):
                    [self.date_time() for _ in range(rng.choice([2, 3]))]}
        if kind == 1:
            return {rng.choice(["<", ">", "<=", ">="]):
                    [self.integer() for _ in range(rng.choice([2, 3]))]}
        if kind == 2:
            return {"extractFromUVCI": [rng.choice(["URN:UVCI:01:NL:187/375#1", "a::c/#/f", "",
                                                    {"var": "u"}]), rng.randint(-1, 6)]}
        if kind == 3:
            return {"if": [self.expression(depth + 1) for _ in range(3)]}
        if kind == 4:
            return {"and": [self.expression(depth + 1) for _ in range(rng.randint(2, 3))]}
        if kind == 5:
            return {"!": [self.expression(depth + 1)]}
        if kind == 6:
            return {"===": [rng.choice([1, "x", True, {"var": "a"}, {"var": "b"}]),
                            rng.choice([1, "x", False, {"var": "s"}, {"var": "b"}])]}
        if kind == 7:
            return {"in": [rng.choice(["x", 1, {"var": "s"}, {"var": "b"}]),
                           rng.choice([["x", "y"], [1, 2], {"var": "arr"}])]}
        return {"reduce": [{"var": "arr"}, {"+": [{"var": "accumulator"}, {"var": "current"}]},
                           rng.randint(-2, 2)]}

    def anything(self, depth: int = 0) -> Any:
        """Mostly invalid expressions: unknown operators, wrong arities, bad literals."""
        rng = self.rng
        leaves = [None, True, False, 0, 3, -2, 1.5, "", "x", "day", "week", "a.b", "x.", ".x",
                  [], {}, 1e21, 1.5e-7]
        if depth > 3 or rng.random() < 0.3:
            return rng.choice(leaves)
        if rng.random() < 0.15:
            return [self.anything(depth + 1) for _ in range(rng.randint(0, 3))]
        operator = rng.choice(["if", "and", "!", "===", "in", "+", "<", ">=", "after",
                               "not-before", "plusTime", "dccDateOfBirth", "reduce",
                               "extractFromUVCI", "var", "bogus"])
        if operator == "var":
            return {"var": rng.choice(["", "x", "a.0.b", "x.", 0, None])}
        if rng.random() < 0.1:
            return {operator: rng.choice(leaves)}
        if rng.random() < 0.05:
            return {operator: [self.anything(depth + 1)], "other": 1}
        return {operator: [self.anything(depth + 1) for _ in range(rng.randint(0, 4))]}

    def data(self) -> dict[str, Any]:
        rng = self.rng
        return {"a": rng.randint(-2, 2), "b": rng.choice([0, 1, None, "", True]),
                "arr": [1, 2, 3], "s": rng.choice(["x", "", "y"]),
                "u": rng.choice([None, "01:AT:X#1"]), "d": self.date_text()}


def _ours(expr: Any, data: Any) -> dict[str, Any]:
    def convert(value: Any) -> Any:
        if isinstance(value, DateTime):
            return "DT:" + value.isoformat()
        return [convert(item) for item in value] if isinstance(value, list) else value
    try:
        return {"ok": True, "value": convert(evaluate(expr, data))}
    except CertLogicError:
        return {"ok": False}


@_NEEDS_JS
def test_evaluation_agrees_with_certlogic_js() -> None:
    generator = _Generator(seed=20211001)
    # A third of the cases return date-times themselves, so results compare to the millisecond.
    cases = [([generator.date_time(), generator.date_time()] if n % 3 == 0
              else generator.expression(), generator.data()) for n in range(3000)]
    theirs = _node(_RUNNER, [{"expr": expr, "data": data} for expr, data in cases])
    assert len(theirs) == len(cases)
    disagreements = [(expr, data, _ours(expr, data), js) for (expr, data), js in zip(cases, theirs)
                     if _ours(expr, data) != js]
    assert not disagreements, json.dumps(disagreements[:3])[:2000]


@_NEEDS_JS
def test_validation_agrees_with_certlogic_js() -> None:
    """Same issues, same sub-expressions, same messages, same order."""
    generator = _Generator(seed=7)
    cases = [generator.anything() for _ in range(3000)]
    theirs = _node(_VALIDATION_RUNNER, cases)
    assert len(theirs) == len(cases)
    disagreements = [(expr, ours, js) for expr, js in zip(cases, theirs)
                     if (ours := [[i.expr, i.message] for i in validate_issues(expr)]) != js]
    assert not disagreements, json.dumps(disagreements[:3])[:2000]
