"""CertLogic evaluator semantics beyond the conformance suite: truthiness, typing, errors."""
from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware.credentials.certlogic import CertLogicError, DateTime, boolsiness, evaluate, validate


def _pt(text: str, amount: int = 0, unit: str = "day") -> dict[str, Any]:
    return {"plusTime": [text, amount, unit]}


@pytest.mark.parametrize(("value", "expected"), [
    (False, False), (None, False), ("", False), (0, False), ([], False), ({}, False),
    (0.0, False),
    (True, True), ("0", True), ("false", True), (1, True), (-1, True), ([0], True),
    ({"a": None}, True), (2.0, True),
    (1.5, None), (float("nan"), None), (float("inf"), None), (DateTime(0), None),
    (b"bytes", None), ((1, 2), None),
])
def test_truthy_falsy_and_neither(value: Any, expected: bool | None) -> None:
    assert boolsiness(value) is expected


@pytest.mark.parametrize("guard", [1.5, {"plusTime": ["2021-01-01", 0, "day"]}])
def test_conditions_on_neither_truthy_nor_falsy_values_raise(guard: Any) -> None:
    data = {"x": guard}
    guard_expr = {"var": "x"} if not isinstance(guard, dict) else guard
    for expr in ({"if": [guard_expr, 1, 2]}, {"!": [guard_expr]},
                 {"and": [guard_expr, True]}, {"and": [True, guard_expr]}):
        with pytest.raises(CertLogicError):
            evaluate(expr, data)


def test_messages_carry_types_not_data_values() -> None:
    """Errors may be logged: they must not repeat certificate data (privacy)."""
    secret = "1970-13-01"
    for expr, data in [
        ({"plusTime": [{"var": "dob"}, 0, "day"]}, {"dob": secret}),
        ({"dccDateOfBirth": [{"var": "dob"}]}, {"dob": secret}),
        ({"if": [{"var": "dob"}, 1, 2]}, {"dob": 1970.5}),
        ({"+": [{"var": "dob"}, 1]}, {"dob": secret}),
        ({"in": [1, {"var": "dob"}]}, {"dob": secret}),
    ]:
        with pytest.raises(CertLogicError) as raised:
            evaluate(expr, data)
        assert secret not in str(raised.value) and "1970.5" not in str(raised.value)


@pytest.mark.parametrize(("expr", "expected"), [
    ({"===": [True, 1]}, False),
    ({"===": [False, 0]}, False),
    ({"===": [1, 1.0]}, True),
    ({"===": ["1", 1]}, False),
    ({"===": [{"var": "n"}, {"var": "missing"}]}, True),
    ({"===": [{"var": "list"}, "a"]}, False),
    ({"===": [{"plusTime": ["2021-01-01", 0, "day"]}, "2021-01-01"]}, False),
    ({"in": [1, [True, "1", 1.0]]}, True),
    ({"in": [True, [1]]}, False),
    ({"in": [{"var": "n"}, {"var": "nulls"}]}, True),
    ({"+": [2, -5]}, -3),
    ({"+": [2.0, 3]}, 5),
    ({"<": [-1, 0, 1]}, True),
    ({">=": [3, 3, 3]}, True),
    ({">": [3, 3, 1]}, False),
])
def test_strict_equality_membership_and_integer_arithmetic(expr: Any, expected: Any) -> None:
    result = evaluate(expr, {"n": None, "list": ["a"], "nulls": [None]})
    assert result == expected and type(result) is type(expected)


@pytest.mark.parametrize("expr", [
    {"===": [{"var": "list"}, {"var": "list"}]},      # two composites: implementations disagree
    {"===": [["a"], ["a"]]},
    {"===": [{"plusTime": ["2021-01-01", 0, "day"]}, {"plusTime": ["2021-01-01", 0, "day"]}]},
    {"in": ["a", "abc"]},                             # right-hand side must be an array
    {"in": ["a", {"var": "n"}]},
    {"in": [["a"], [["a"]]]},
    {"+": [True, 1]},
    {"+": ["1", 1]},
    {"+": [1.5, 1]},
    {"<": [True, 2]},
    {"<": [1, "2"]},
    {"<": [1, None]},
    {"before": [1, 2]},
    {"after": [{"plusTime": ["2021-01-01", 0, "day"]}, "2020-01-01"]},
    {"plusTime": [{"var": "n"}, 0, "day"]},
    {"plusTime": ["2021-01-01", {"var": "k"}, "day"]},   # amount must be a literal integer
    {"plusTime": ["2021-01-01", 1.5, "day"]},
    {"plusTime": ["2021-01-01", 1, "week"]},
    {"plusTime": ["2021-01-01", 1, {"var": "u"}]},
    {"plusTime": [{"plusTime": ["2021-01-01", 0, "day"]}, 1, "day"]},
    {"dccDateOfBirth": [{"var": "n"}]},
    {"dccDateOfBirth": ["2004-01-01T00:00:00Z"]},
    {"dccDateOfBirth": ["2004-1"]},
    {"dccDateOfBirth": ["2004-13"]},
    {"extractFromUVCI": [42, 0]},
    {"extractFromUVCI": ["URN:UVCI:01:NL:1", {"var": "k"}]},
    {"reduce": ["abc", {"var": "accumulator"}, 0]},
    {"if": [True, 1]},
    {"!": [True, False]},
    {"and": [True]},
    {"var": 1},
    {"var": "a..b"},
    {"var": "x", "if": [1, 2, 3]},
    {"unknown": [1]},
    {"if": "not a list"},
    None,
    1.25,
    [1, None],
])
def test_invalid_expressions_and_type_mismatches_raise_certlogic_error(expr: Any) -> None:
    with pytest.raises(CertLogicError):
        evaluate(expr, {"n": None, "list": ["a"], "k": 1, "u": "day"})


@pytest.mark.parametrize(("path", "data", "expected"), [
    ("x.length", {"x": [1, 2]}, None),         # no JavaScript property leaks through
    ("x.-1", {"x": [1, 2]}, None),
    ("x.1", {"x": [1, 2]}, 2),
    ("x.01", {"x": [1, 2]}, 2),
    ("x.2", {"x": [1, 2]}, None),
    ("x.1", {"x": {"1": "one"}}, "one"),      # an integer fragment on an object is a key
    ("x.0", {"x": "abc"}, None),              # strings are not drillable
    ("x.y", {"x": 5}, None),
    ("x", None, None),
    ("x", [1], None),
    ("0.0", [[7]], 7),
    ("", 3, 3),
])
def test_var_drills_into_objects_and_arrays_only(path: str, data: Any, expected: Any) -> None:
    assert evaluate({"var": path}, data) == expected


def test_reduce_lambda_scope_and_optional_data_extension() -> None:
    count_z = {"reduce": [{"var": "xs"}, {"+": [{"var": "accumulator"}, {"if": [
        {"===": [{"var": "current"}, {"var": "data.z"}]}, 1, 0]}]}, 0]}
    data = {"xs": [1, 2, 1], "z": 1}
    assert evaluate(count_z, data) == 0                     # lambda sees only current/accumulator
    assert evaluate(count_z, data, reduce_with_data=True) == 2
    assert evaluate({"reduce": [{"var": "none"}, {"var": "current"}, "init"]}, {}) == "init"
    concat = {"reduce": [[1, 2, 3], {"+": [{"var": "accumulator"}, {"var": "current"}]}, 10]}
    assert evaluate(concat, None) == 16


def test_lazy_evaluation_of_if_and_and() -> None:
    boom = {"plusTime": [{"var": "missing"}, 0, "day"]}   # raises when evaluated
    assert evaluate({"if": [True, 1, boom]}, {}) == 1
    assert evaluate({"if": [0, boom, 2]}, {}) == 2
    assert evaluate({"and": [0, boom]}, {}) == 0
    with pytest.raises(CertLogicError):
        evaluate({"and": [1, boom]}, {})


def test_arrays_evaluate_item_by_item() -> None:
    assert evaluate([{"var": "a"}, [{"var": "b"}], "c"], {"a": 1, "b": 2}) == [1, [2], "c"]


def test_date_time_results_are_values_not_strings() -> None:
    result = evaluate(_pt("2021-06-01T00:00:00+02:00", 1, "hour"), None)
    assert isinstance(result, DateTime)
    assert result.isoformat() == "2021-05-31T23:00:00.000Z"
    assert str(result.to_datetime()) == "2021-05-31 23:00:00+00:00"


def test_deep_nesting_is_an_error_not_a_crash() -> None:
    expr: Any = True
    for _ in range(20_000):
        expr = {"!": [expr]}
    with pytest.raises(CertLogicError):
        evaluate(expr, {})
    assert validate(expr)  # reported, not a RecursionError
    deep_data: Any = 1
    for _ in range(20_000):
        deep_data = [deep_data]
    # Drilling into deep data is iterative: it works at any depth.
    assert evaluate({"var": "0.0.0"}, deep_data) == deep_data[0][0][0]


_OPERATORS = ["if", "and", "!", "===", "in", "+", "<", ">", "<=", ">=", "after", "before",
              "not-after", "not-before", "plusTime", "dccDateOfBirth", "reduce",
              "extractFromUVCI", "var", "bogus"]
_scalars = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.floats(allow_nan=True),
                     st.sampled_from(["", "x", "2021-06-01", "2004-02", "2021-06-01T10:00:00Z",
                                      "day", "year", "URN:UVCI:01:AT:X#1", "a.b", "current"]))
_expressions = st.recursive(
    _scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.builds(lambda op, args: {op: args}, st.sampled_from(_OPERATORS),
                  st.one_of(st.lists(children, max_size=4), children)),
        st.dictionaries(st.text(max_size=3), children, max_size=2),
    ),
    max_leaves=12,
)
_data = st.recursive(_scalars, lambda c: st.one_of(
    st.lists(c, max_size=3), st.dictionaries(st.sampled_from(["x", "a", "b", "0"]), c, max_size=3)),
    max_leaves=8)


@settings(max_examples=300, deadline=None)
@given(expr=_expressions, data=_data)
def test_any_input_gives_a_value_or_a_certlogic_error(expr: Any, data: Any) -> None:
    """Never another exception type: the rules stage relies on it to report OPEN."""
    problems = validate(expr)
    assert all(isinstance(problem, str) for problem in problems)
    try:
        evaluate(expr, data)
    except CertLogicError:
        pass
