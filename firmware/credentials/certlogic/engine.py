"""The CertLogic evaluator: `evaluate(expr, data)` to specification 1.3.3.

Each operation checks its own shape before evaluating any operand (with the same messages as
the validator), operands are evaluated lazily where the spec says so (`if`, `and`), and every
failure is a `CertLogicError`: never undefined behaviour, never another exception type.
"""
from __future__ import annotations

from typing import Callable

from firmware.credentials.certlogic import datetimes
from firmware.credentials.certlogic.values import (
    CertLogicError,
    DateTime,
    boolsiness,
    is_int,
    strict_equals,
    described,
    type_name,
)
from firmware.credentials.certlogic.validation import (
    COMPARISON_OPERATORS,
    shape_problem,
    invalid_path,
    literal_problem,
)
from firmware.protocol.decoded import Decoded

# Operations one evaluation may perform (each evaluated sub-expression, each `reduce` step over a
# data array): a real rule takes well under 1,000; the bound keeps a rule over a large data
# array (or a rule gone wrong) from holding the decision loop.
MAX_EVALUATION_STEPS = 20_000


def evaluate(expr: Decoded, data: Decoded, *, reduce_with_data: bool = False) -> Decoded:
    """Evaluate the CertLogic expression `expr` against the data context `data`.

    `reduce_with_data=True` enables the spec's optional extension that gives a `reduce` lambda
    the original data context as `data` (next to `accumulator` and `current`); the reference
    apps do not do this, so it is off by default.

    Returns a JSON value or a `DateTime`; raises `CertLogicError` for an invalid expression or a
    type mismatch found while evaluating.
    """
    evaluator = _Evaluator(reduce_with_data)
    try:
        return evaluator.evaluate(expr, data)
    except RecursionError:
        raise CertLogicError("expression or data nested too deeply to evaluate") from None


class _Evaluator:
    """One evaluation; holds the options so the recursive functions stay small."""

    __slots__ = ("reduce_with_data", "steps")

    def __init__(self, reduce_with_data: bool) -> None:
        self.reduce_with_data = reduce_with_data
        self.steps = 0

    def evaluate(self, expr: Decoded, data: Decoded) -> Decoded:
        self.steps += 1
        if self.steps > MAX_EVALUATION_STEPS:
            raise CertLogicError(f"evaluation takes more than {MAX_EVALUATION_STEPS} steps")
        if isinstance(expr, (str, bool)):
            return expr
        if isinstance(expr, dict):
            return self._operation(expr, data)
        if isinstance(expr, list):
            return [self.evaluate(item, data) for item in expr]
        if is_int(expr):
            return expr
        raise CertLogicError(literal_problem(expr))

    def _operation(self, expr: dict[str, Decoded], data: Decoded) -> Decoded:
        if len(expr) != 1:
            raise CertLogicError(
                f"expression object must have exactly one key, but it has {len(expr)}")
        ((operator, values),) = expr.items()
        if operator == "var":
            return self._var(values, data)
        if not isinstance(values, list):
            raise CertLogicError('operation not of the form { "<operator>": [ <values...> ] }')
        operation = _OPERATIONS.get(operator)
        if operation is None:
            raise CertLogicError(f'unrecognised operator: "{operator}"')
        problem = shape_problem(operator, values)
        if problem is not None:
            raise CertLogicError(problem)
        return operation(self, values, data)

    # --- data access -------------------------------------------------------------------------

    @staticmethod
    def _var(path: Decoded, data: Decoded) -> Decoded:
        if not isinstance(path, str):
            raise CertLogicError('not of the form { "var": "<path>" }')
        if path == "":
            return data
        if invalid_path(path):
            raise CertLogicError(f"data access path doesn't have a valid format: {path}")
        current = data
        for fragment in path.split("."):
            if isinstance(current, dict):
                current = current.get(fragment)
            elif isinstance(current, list) and fragment.isdigit() and fragment.isascii():
                index = int(fragment)
                current = current[index] if index < len(current) else None
            else:
                # null, scalars, date-times, or a non-integer fragment on an array: no value.
                return None
        return current

    # --- control flow and logic ----------------------------------------------------------------

    def _if(self, values: list[Decoded], data: Decoded) -> Decoded:
        guard = self.evaluate(values[0], data)
        truth = boolsiness(guard)
        if truth is None:
            raise CertLogicError(
                f"if-guard evaluates to something neither truthy, nor falsy ({described(guard)})")
        return self.evaluate(values[1] if truth else values[2], data)

    def _and(self, values: list[Decoded], data: Decoded) -> Decoded:
        result: Decoded = None
        for operand in values:
            result = self.evaluate(operand, data)
            truth = boolsiness(result)
            if truth is None:
                raise CertLogicError('all operands of an "and" operation must be either truthy or '
                                     f"falsy, but one is {described(result)}")
            if not truth:
                return result
        return result

    def _not(self, values: list[Decoded], data: Decoded) -> bool:
        operand = self.evaluate(values[0], data)
        truth = boolsiness(operand)
        if truth is None:
            raise CertLogicError("operand of ! evaluates to something neither truthy, nor falsy "
                                 f"({described(operand)})")
        return not truth

    # --- infix operators ----------------------------------------------------------------------

    def _equals(self, values: list[Decoded], data: Decoded) -> bool:
        return strict_equals(self.evaluate(values[0], data), self.evaluate(values[1], data))

    def _in(self, values: list[Decoded], data: Decoded) -> bool:
        needle = self.evaluate(values[0], data)
        haystack = self.evaluate(values[1], data)
        if not isinstance(haystack, list):
            raise CertLogicError('right-hand side of an "in" operation must be an array, '
                                 f"but it is {described(haystack)}")
        return any(strict_equals(needle, item) for item in haystack)

    def _plus(self, values: list[Decoded], data: Decoded) -> int:
        left = self.evaluate(values[0], data)
        right = self.evaluate(values[1], data)
        if not (is_int(left) and is_int(right)):
            raise CertLogicError('operands of a "+" operation must both be integers, but they are '
                                 f"{described(left)} and {described(right)}")
        return int(left) + int(right)

    def _comparison(self, operator: str, values: list[Decoded], data: Decoded) -> bool:
        operands = [self.evaluate(value, data) for value in values]
        if operator in _DATE_COMPARISONS:
            if not all(isinstance(operand, DateTime) for operand in operands):
                raise CertLogicError(
                    f'all operands of a "{operator}" date-time comparison must be date-times, '
                    f"but they are: {', '.join(type_name(o) for o in operands)}")
            keys = [operand.epoch_ms for operand in operands]
        else:
            if not all(is_int(operand) for operand in operands):
                raise CertLogicError(
                    f'all operands of a "{operator}" comparison must be integers, '
                    f"but they are: {', '.join(type_name(o) for o in operands)}")
            keys = [int(operand) for operand in operands]
        compare = _COMPARE[operator]
        # Ternary form: (a op b) and (b op c).
        return all(compare(keys[i], keys[i + 1]) for i in range(len(keys) - 1))

    # --- custom operations --------------------------------------------------------------------

    def _plus_time(self, values: list[Decoded], data: Decoded) -> DateTime:
        # The validator has already vetted amount and unit (both literals, not expressions).
        amount, unit = int(values[1]), values[2]
        text = self.evaluate(values[0], data)
        if not isinstance(text, str):
            raise CertLogicError('date argument of "plusTime" must be a string, '
                                 f"but it evaluated to {described(text)}")
        return datetimes.plus_time(text, amount, unit)

    def _dcc_date_of_birth(self, values: list[Decoded], data: Decoded) -> DateTime:
        text = self.evaluate(values[0], data)
        if not isinstance(text, str):
            raise CertLogicError('operand of "dccDateOfBirth" must be a string, '
                                 f"but it evaluated to {described(text)}")
        return datetimes.dcc_date_of_birth(text)

    def _reduce(self, values: list[Decoded], data: Decoded) -> Decoded:
        operand = self.evaluate(values[0], data)
        if operand is None:
            return self.evaluate(values[2], data)
        if not isinstance(operand, list):
            raise CertLogicError("operand of reduce evaluated to a non-null non-array "
                                 f"({described(operand)})")
        lambda_expr = values[1]
        accumulator = self.evaluate(values[2], data)
        for current in operand:
            context: dict[str, Decoded] = {"accumulator": accumulator, "current": current}
            if self.reduce_with_data:
                context["data"] = data
            accumulator = self.evaluate(lambda_expr, context)
        return accumulator

    def _extract_from_uvci(self, values: list[Decoded], data: Decoded) -> str | None:
        uvci = self.evaluate(values[0], data)
        if uvci is not None and not isinstance(uvci, str):
            raise CertLogicError('"UVCI" argument (#1) of "extractFromUVCI" must be either a '
                                 f"string or null, but it is {described(uvci)}")
        return extract_from_uvci(uvci, int(values[1]))


_UVCI_PREFIX = "URN:UVCI:"
_UVCI_SEPARATORS = str.maketrans({"#": "/", ":": "/"})


def extract_from_uvci(uvci: str | None, index: int) -> str | None:
    """Fragment `index` (0-based) of a UCI split on `/`, `#` and `:` after dropping an optional
    `URN:UVCI:` prefix; None when the UCI is null or the fragment does not exist."""
    if uvci is None or index < 0:
        return None
    if uvci.startswith(_UVCI_PREFIX):
        uvci = uvci[len(_UVCI_PREFIX):]
    fragments = uvci.translate(_UVCI_SEPARATORS).split("/")
    return fragments[index] if index < len(fragments) else None


_COMPARE: dict[str, Callable[[int, int], bool]] = {
    "<": lambda a, b: a < b,
    ">": lambda a, b: a > b,
    "<=": lambda a, b: a <= b,
    ">=": lambda a, b: a >= b,
    "before": lambda a, b: a < b,
    "after": lambda a, b: a > b,
    "not-after": lambda a, b: a <= b,
    "not-before": lambda a, b: a >= b,
}

_DATE_COMPARISONS = frozenset(("after", "before", "not-after", "not-before"))

_Operation = Callable[[_Evaluator, list[Decoded], Decoded], Decoded]
# Operator -> the method that evaluates it; built once, shared by all evaluations.
_OPERATIONS: dict[str, _Operation] = {
    "if": _Evaluator._if,
    "and": _Evaluator._and,
    "!": _Evaluator._not,
    "===": _Evaluator._equals,
    "in": _Evaluator._in,
    "+": _Evaluator._plus,
    "plusTime": _Evaluator._plus_time,
    "dccDateOfBirth": _Evaluator._dcc_date_of_birth,
    "reduce": _Evaluator._reduce,
    "extractFromUVCI": _Evaluator._extract_from_uvci,
}


def _comparison_operation(operator: str) -> _Operation:
    return lambda evaluator, values, data: evaluator._comparison(operator, values, data)


_OPERATIONS.update({operator: _comparison_operation(operator) for operator in COMPARISON_OPERATORS})

__all__ = ["evaluate", "extract_from_uvci"]
