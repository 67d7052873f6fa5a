"""Conformance: every assertion of the CertLogic testSuite and every validation-testSuite case."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import pytest

from firmware.credentials.certlogic import (
    CertLogicError,
    DateTime,
    evaluate,
    validate,
    validate_issues,
)

CERTLOGIC = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "certlogic"

# The suite's own file-level `skip` marks `patched-reduce.json`, which exercises the spec's
# optional "reduce lambda sees the data context" extension: we run it with that option on.
PATCHED_FILES = {"patched-reduce.json"}


def _suite_files(folder: str) -> list[Path]:
    directory = CERTLOGIC / folder
    return sorted(directory.glob("*.json")) if directory.is_dir() else []


def _assertions() -> Iterator[Any]:
    for path in _suite_files("testSuite"):
        suite = json.loads(path.read_text(encoding="utf-8"))
        for case_no, case in enumerate(suite["cases"]):
            for no, assertion in enumerate(case["assertions"]):
                expr = assertion.get("certLogicExpression", case.get("certLogicExpression"))
                directive = assertion.get("directive") or case.get("directive") \
                    or suite.get("directive") or "run"
                label = f"{path.name}|{directive}|case{case_no}:{case['name']}|assertion{no}"
                yield pytest.param(path.name, directive, expr, assertion, id=label)


def _validation_cases() -> Iterator[Any]:
    for path in _suite_files("validation-testSuite"):
        suite = json.loads(path.read_text(encoding="utf-8"))
        for no, case in enumerate(suite["cases"]):
            directive = case.get("directive") or suite.get("directive") or "run"
            label = f"{path.name}|{directive}|case{no}:{case.get('name', json.dumps(case['certLogicExpression']))}"
            yield pytest.param(case, id=label)


def _as_json(value: Any) -> Any:
    """Evaluation results compared as JSON: date-times in their ISO rendering."""
    if isinstance(value, DateTime):
        return value.isoformat()
    if isinstance(value, list):
        return [_as_json(item) for item in value]
    if isinstance(value, dict):
        return {key: _as_json(item) for key, item in value.items()}
    return value


def _same_json(actual: Any, expected: Any) -> bool:
    """JSON equality that keeps booleans apart from integers (True == 1 in Python)."""
    if isinstance(expected, bool) or isinstance(actual, bool):
        return type(actual) is type(expected) and actual == expected
    if isinstance(expected, list):
        return isinstance(actual, list) and len(actual) == len(expected) and all(
            _same_json(a, e) for a, e in zip(actual, expected))
    if isinstance(expected, dict):
        return isinstance(actual, dict) and actual.keys() == expected.keys() and all(
            _same_json(actual[k], expected[k]) for k in expected)
    return actual == expected and (actual is None) == (expected is None)


def test_suites_present(shared_data: Path) -> None:
    """Guard against silently running zero cases: the data set has 14 + 4 files."""
    assert len(_suite_files("testSuite")) == 14
    assert len(_suite_files("validation-testSuite")) == 4


@pytest.mark.parametrize(("file_name", "directive", "expr", "assertion"), list(_assertions()))
def test_suite_assertion(shared_data: Path, file_name: str, directive: str, expr: Any,
                         assertion: dict[str, Any]) -> None:
    data, expected = assertion["data"], assertion["expected"]
    if file_name in PATCHED_FILES:
        # With the optional extension the patched expectations hold ...
        assert _same_json(_as_json(evaluate(expr, data, reduce_with_data=True)), expected)
        # ... and without it the lambda sees no `data` (as in the reference apps), which is
        # the patched behaviour on a context whose `z` is absent.
        unpatched = evaluate(expr, data)
        without_z = {k: v for k, v in data.items() if k != "z"} if isinstance(data, dict) else data
        assert unpatched == evaluate(expr, without_z, reduce_with_data=True)
        return
    if directive == "skip":
        # Skipped by the suite because the reference engines raise here ("in" on null), and so
        # does the spec: "operating on a non-array <operand 2> is considered an error".
        with pytest.raises(CertLogicError):
            evaluate(expr, data)
        return
    assert validate(expr) == [], "suite expressions are valid CertLogic"
    actual = _as_json(evaluate(expr, data))
    assert _same_json(actual, expected), assertion.get("message", "")


@pytest.mark.parametrize("case", list(_validation_cases()))
def test_validation_case(shared_data: Path, case: dict[str, Any]) -> None:
    expr = case["certLogicExpression"]
    issues = validate_issues(expr)
    assert [(i.expr, i.message) for i in issues] == \
        [(i["expr"], i["message"]) for i in case["issues"]]
    if case["issues"]:
        with pytest.raises(CertLogicError) as raised:
            evaluate(expr, {})
        assert str(raised.value) == case["issues"][0]["message"]
