"""CertLogic validator: the list of problems with an expression, like the reference JS
`validate` (same messages), covering every operation of specification 1.3.3."""
from __future__ import annotations

from dataclasses import dataclass

from firmware.credentials.certlogic.datetimes import TIME_UNITS
from firmware.credentials.certlogic.values import is_int, js_string
from firmware.protocol.decoded import Decoded

COMPARISON_OPERATORS: tuple[str, ...] = (
    "<", ">", "<=", ">=", "after", "before", "not-after", "not-before")
_BINARY_OPERATORS: tuple[str, ...] = ("===", "in", "+")
KNOWN_OPERATORS: frozenset[str] = frozenset(
    ("var", "if", "and", "!", "plusTime", "dccDateOfBirth", "reduce", "extractFromUVCI")
    + COMPARISON_OPERATORS + _BINARY_OPERATORS)

# How many leading operands of each operation are themselves CertLogic expressions.
_EXPRESSION_OPERANDS: dict[str, int] = {
    "if": 3, "!": 1, "plusTime": 1, "dccDateOfBirth": 1, "reduce": 3, "extractFromUVCI": 1,
    **{operator: 3 for operator in COMPARISON_OPERATORS},
    **{operator: 2 for operator in _BINARY_OPERATORS},
}


@dataclass(frozen=True)
class ValidationIssue:
    """One problem: the (sub-)expression it is about, and what is wrong with it."""

    expr: Decoded
    message: str


def invalid_path(path: str) -> bool:
    """Whether a non-empty `var` path has an empty fragment ("x.", ".x", "x..y")."""
    return "" in path.split(".")


def literal_problem(expr: Decoded) -> str:
    """Why a non-operation, non-array value is not a valid literal."""
    if isinstance(expr, float):
        return f"{js_string(expr)} is a non-integer number"
    return "invalid CertLogic expression"


def shape_problem(operator: str, values: list[Decoded]) -> str | None:
    """The first problem with a known operation's own operands (not its sub-expressions)."""
    count = len(values)
    if operator == "if":
        if count != 3:
            return f'an "if"-operation must have exactly 3 values/operands, but it has {count}'
    elif operator == "and":
        if count < 2:
            return f'an "and" operation must have at least 2 operands, but it has {count}'
    elif operator in COMPARISON_OPERATORS:
        if not 2 <= count <= 3:
            return (f'an operation with operator "{operator}" must have 2 or 3 operands, '
                    f"but it has {count}")
    elif operator in _BINARY_OPERATORS:
        if count != 2:
            return f'an operation with operator "{operator}" must have 2 operands, but it has {count}'
    elif operator == "!":
        if count != 1:
            return ("a !-operation (logical not/negation) must have exactly 1 operand, "
                    f"but it has {count}")
    elif operator == "dccDateOfBirth":
        if count != 1:
            return (f'a "dccDateOfBirth"-operation must have exactly 1 value/operand, '
                    f"but it has {count}")
    elif operator == "reduce":
        if count != 3:
            return f'a "reduce"-operation must have exactly 3 values/operands, but it has {count}'
    elif operator == "plusTime":
        problems = _plus_time_problems(values)
        return problems[0] if problems else None
    elif operator == "extractFromUVCI":
        problems = _extract_problems(values)
        return problems[0] if problems else None
    return None


def _plus_time_problems(values: list[Decoded]) -> list[str]:
    problems = []
    if len(values) != 3:
        problems.append('a "plusTime"-operation must have exactly 3 values/operands, '
                        f"but it has {len(values)}")
    if len(values) > 1 and not is_int(values[1]):
        problems.append('"amount" argument (#2) of "plusTime" must be an integer, '
                        f"but it is: {js_string(values[1])}")
    if len(values) > 2 and not (isinstance(values[2], str) and values[2] in TIME_UNITS):
        problems.append('"unit" argument (#3) of "plusTime" must be a string equal to one of '
                        f"{', '.join(TIME_UNITS)}, but it is: {js_string(values[2])}")
    return problems


def _extract_problems(values: list[Decoded]) -> list[str]:
    problems = []
    if len(values) != 2:
        problems.append('an "extractFromUVCI"-operation must have exactly 2 values/operands, '
                        f"but it has {len(values)}")
    if len(values) > 1 and not is_int(values[1]):
        problems.append('"index" argument (#2) of "extractFromUVCI" must be an integer, '
                        f"but it is: {js_string(values[1])}")
    return problems


def validate_issues(expr: Decoded) -> list[ValidationIssue]:
    """Every problem in `expr`, each with the sub-expression it concerns (empty: valid)."""
    issues: list[ValidationIssue] = []
    _collect(expr, issues, depth=0)
    return issues


def validate(expr: Decoded) -> list[str]:
    """The messages of every problem in `expr`; an empty list means the expression is valid."""
    return [issue.message for issue in validate_issues(expr)]


_MAX_DEPTH = 400  # far beyond any real rule; keeps validation clear of Python's recursion limit


def _collect(expr: Decoded, issues: list[ValidationIssue], depth: int) -> None:
    if depth > _MAX_DEPTH:
        issues.append(ValidationIssue(expr, f"expression nested deeper than {_MAX_DEPTH} levels"))
        return
    if isinstance(expr, (str, bool)) or is_int(expr):
        return
    if isinstance(expr, list):
        for item in expr:
            _collect(item, issues, depth + 1)
        return
    if not isinstance(expr, dict):
        issues.append(ValidationIssue(expr, literal_problem(expr)))
        return
    if len(expr) != 1:
        issues.append(ValidationIssue(
            expr, f"expression object must have exactly one key, but it has {len(expr)}"))
        return
    ((operator, values),) = expr.items()
    if operator == "var":
        if not isinstance(values, str):
            issues.append(ValidationIssue(expr, 'not of the form { "var": "<path>" }'))
        elif values != "" and invalid_path(values):
            issues.append(ValidationIssue(
                expr, f"data access path doesn't have a valid format: {values}"))
        return
    if not isinstance(values, list):
        issues.append(ValidationIssue(
            expr, 'operation not of the form { "<operator>": [ <values...> ] }'))
        return
    if operator not in KNOWN_OPERATORS:
        issues.append(ValidationIssue(expr, f'unrecognised operator: "{operator}"'))
        return
    if operator in ("plusTime", "extractFromUVCI"):
        # As the reference validator: the arity, then the first operand's own problems, then
        # those of the literal operands (amount and unit, or index).
        own = (_plus_time_problems if operator == "plusTime" else _extract_problems)(values)
        arity = [message for message in own if "values/operands" in message]
        issues.extend(ValidationIssue(expr, message) for message in arity)
        if values:
            _collect(values[0], issues, depth + 1)
        issues.extend(ValidationIssue(expr, message) for message in own if message not in arity)
        return
    problem = shape_problem(operator, values)
    if problem is not None:
        issues.append(ValidationIssue(expr, problem))
        if operator == "!":
            return  # the reference validator does not look inside a malformed negation
    # `and` takes any number of expression operands; the others a fixed number.
    limit = len(values) if operator == "and" else _EXPRESSION_OPERANDS[operator]
    for operand in values[:limit]:
        _collect(operand, issues, depth + 1)
