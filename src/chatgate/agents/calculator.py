"""A safe arithmetic evaluator and a finder of arithmetic in free text.

User text is never turned into code: :func:`evaluate` parses it with
``ast.parse(..., mode="eval")`` and walks only numeric constants, unary ``+``
and ``-``, and the binary operators ``+ - * / // % **``. Every failure, from a
syntax error to a result that would be too large, raises :class:`CalculatorError`.
"""

from __future__ import annotations

import ast
import math
import operator
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

MAX_EXPRESSION_LENGTH = 200
MAX_NODES = 256
MAX_EXPONENT = 100
MAX_RESULT = 1e100

# Floats hold every integer exactly only up to 2**53; beyond that an "integral"
# float is an approximation, and converting it would print misleading digits.
_EXACT_FLOAT_INT_LIMIT = 2**53
_MAX_RESULT_DIGITS = math.log10(MAX_RESULT)

Number = int | float


class CalculatorError(ValueError):
    """The expression is not allowed arithmetic or cannot be computed."""


def _power(base: Number, exponent: Number) -> Number:
    """Raise ``base`` to ``exponent``, refusing results too large to compute cheaply."""
    if abs(exponent) > MAX_EXPONENT:
        msg = f"exponent {exponent} is larger than {MAX_EXPONENT} in magnitude"
        raise CalculatorError(msg)
    if base == 0 and exponent < 0:
        raise CalculatorError("division by zero")
    if base < 0 and not float(exponent).is_integer():
        raise CalculatorError("a negative number to a fractional power is not real")
    # Estimate the size from logarithms before computing, so that a huge base
    # never gets raised for real; the exact bound is checked on the result.
    if base != 0 and exponent * math.log10(abs(base)) > _MAX_RESULT_DIGITS + 1:
        raise CalculatorError(f"result is larger than {MAX_RESULT:g}")
    result: Number = base**exponent
    return result


_BINARY_OPERATORS: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: _power,
}

_UNARY_OPERATORS: dict[type[ast.unaryop], Callable[[Any], Any]] = {
    ast.UAdd: operator.pos,
    ast.USub: operator.neg,
}


_REFUSALS: dict[type[ast.AST], str] = {
    ast.Name: "names are not allowed in arithmetic",
    ast.Call: "function calls are not allowed in arithmetic",
    ast.Attribute: "attributes are not allowed in arithmetic",
    ast.Subscript: "subscripts are not allowed in arithmetic",
    ast.Lambda: "lambdas are not allowed in arithmetic",
    ast.Compare: "comparisons are not allowed in arithmetic",
    ast.BoolOp: "and/or are not allowed in arithmetic",
    ast.BitXor: "^ is not allowed in arithmetic; write ** for powers",
}


def _checked(value: object) -> Number:
    """Return ``value`` if it is a real number within bounds, else raise."""
    # bool is a subclass of int, and "True" parses as a constant.
    if isinstance(value, bool) or not isinstance(value, int | float):
        msg = f"only numbers are allowed, got {type(value).__name__}"
        raise CalculatorError(msg)
    if math.isnan(value) or abs(value) > MAX_RESULT:
        raise CalculatorError(f"number is larger than {MAX_RESULT:g} in magnitude")
    return value


def _evaluate_node(node: ast.expr) -> Number:
    """Compute one allowed node, raising CalculatorError on anything else."""
    if isinstance(node, ast.Constant):
        return _checked(node.value)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY_OPERATORS:
        operand = _evaluate_node(node.operand)
        return _checked(_UNARY_OPERATORS[type(node.op)](operand))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY_OPERATORS:
        left = _evaluate_node(node.left)
        right = _evaluate_node(node.right)
        try:
            return _checked(_BINARY_OPERATORS[type(node.op)](left, right))
        except ZeroDivisionError as error:
            raise CalculatorError("division by zero") from error
        except OverflowError as error:
            raise CalculatorError(f"result is larger than {MAX_RESULT:g}") from error
    # An operation of a known shape is refused for its operator, e.g. "^".
    refused: ast.AST = node.op if isinstance(node, ast.BinOp | ast.UnaryOp) else node
    default = f"{type(refused).__name__} is not allowed in arithmetic"
    raise CalculatorError(_REFUSALS.get(type(refused), default))


def _parse(expression: str) -> ast.Expression:
    """Parse ``expression`` within the length and size limits."""
    if len(expression) > MAX_EXPRESSION_LENGTH:
        msg = f"expression is longer than {MAX_EXPRESSION_LENGTH} characters"
        raise CalculatorError(msg)
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as error:
        msg = f"not a valid arithmetic expression: {expression!r}"
        raise CalculatorError(msg) from error
    _check_size(_Shape.of(tree))
    return tree


@dataclass(slots=True)
class _Shape:
    """What one walk over a tree tells: its size and whether it holds an operation."""

    nodes: int
    has_operation: bool

    @classmethod
    def of(cls, tree: ast.AST) -> _Shape:
        # ast.walk visits the same nodes at four times the cost (a generator
        # per node, a deque): every chat message the demo agent reads pays it.
        nodes = 0
        has_operation = False
        stack = [tree]
        while stack:
            node = stack.pop()
            nodes += 1
            if type(node) is ast.BinOp:
                has_operation = True
            for name in node._fields:
                child = getattr(node, name, None)
                if isinstance(child, ast.AST):
                    stack.append(child)
                elif type(child) is list:
                    stack.extend(item for item in child if isinstance(item, ast.AST))
        return cls(nodes, has_operation)


def _check_size(shape: _Shape) -> None:
    if shape.nodes > MAX_NODES:
        raise CalculatorError(f"expression has more than {MAX_NODES} elements")


def _normalized(value: Number) -> Number:
    """Return an integral float as an int where the float is exact."""
    if isinstance(value, float) and value.is_integer() and abs(value) <= _EXACT_FLOAT_INT_LIMIT:
        return int(value)
    return value


def evaluate(expression: str) -> int | float:
    """Compute a Python-syntax arithmetic expression such as ``"(2+3) * 4"``.

    Returns an int when the result is integral (``"7/7"`` gives ``1``).
    Raises CalculatorError for anything but numbers and ``+ - * / // % **``,
    for division by zero, and when a limit on length, size or magnitude is hit.
    """
    return _normalized(_evaluate_node(_parse(expression).body))


@dataclass(slots=True)
class Arithmetic:
    """Arithmetic found in free text: the expression, and its tree when already parsed."""

    expression: str
    tree: ast.Expression | None = None
    shape: _Shape | None = None

    def evaluate(self) -> int | float:
        """What :func:`evaluate` gives for ``expression``, without parsing it again."""
        if self.tree is None or self.shape is None:
            return evaluate(self.expression)
        _check_size(self.shape)
        return _normalized(_evaluate_node(self.tree.body))


# People write operators as they would on paper: "2^10", "3 x 4", the
# multiplication and division signs, the minus sign. They become Python
# operators before the search so that the parser can judge the result.
_TIMES_BETWEEN_NUMBERS = re.compile(r"(?<=[0-9)])\s*[xX\N{MULTIPLICATION SIGN}]\s*(?=[0-9.(])")
_SIGN_SPELLINGS = (
    ("\N{MULTIPLICATION SIGN}", "*"),
    ("\N{DIVISION SIGN}", "/"),
    ("\N{MINUS SIGN}", "-"),
    ("^", "**"),
)
_CANDIDATE = re.compile(r"[0-9.+\-*/%()\s]+", re.ASCII)
_SPACE = " \t\n\r\f\v"
_NOT_AT_START = _SPACE + "*/%)"
_NOT_AT_END = _SPACE + "+-*/%(."
_OPERATOR_BETWEEN_NUMBERS = re.compile(r"[0-9)]\s*[-+*/%]")


def _trimmed(candidate: str) -> str:
    """Drop what cannot start or end an expression, and unmatched outer parens.

    A run of operator characters often borrows punctuation from the sentence
    around it, as in "(what is 6*7)" or "what is 6*7 (roughly)?".
    """
    candidate = candidate.lstrip(_NOT_AT_START).rstrip(_NOT_AT_END)
    # Each pass below counts parens again; beyond the length limit the
    # candidate is refused by evaluate() anyway, so it is not worth the time.
    while len(candidate) <= MAX_EXPRESSION_LENGTH:
        trimmed = candidate
        if trimmed.startswith("(") and trimmed.count("(") > trimmed.count(")"):
            trimmed = trimmed[1:]
        elif trimmed.endswith(")") and trimmed.count(")") > trimmed.count("("):
            trimmed = trimmed[:-1]
        trimmed = trimmed.lstrip(_NOT_AT_START).rstrip(_NOT_AT_END)
        if trimmed == candidate:
            break
        candidate = trimmed
    return candidate


def _as_arithmetic(candidate: str) -> Arithmetic | None:
    """``candidate`` as arithmetic when it is an expression with at least one operation."""
    if len(candidate) > MAX_EXPRESSION_LENGTH:
        # Too long to parse safely here; evaluate() reports the limit instead.
        found = _OPERATOR_BETWEEN_NUMBERS.search(candidate) is not None
        return Arithmetic(candidate) if found else None
    try:
        tree = ast.parse(candidate, mode="eval")
    except SyntaxError:
        return None
    shape = _Shape.of(tree)
    return Arithmetic(candidate, tree, shape) if shape.has_operation else None


def find_arithmetic(text: str) -> Arithmetic | None:
    """Find arithmetic in free text, in Python syntax and parsed once.

    ``"what is 6*7?"`` gives ``"6*7"`` and ``"2^10"`` gives ``"2**10"``.
    Returns None when the text holds no operation on numbers, so ``"42"``
    alone or ``"what is love?"`` give None. Never raises.
    """
    text = _TIMES_BETWEEN_NUMBERS.sub("*", text)
    for sign, replacement in _SIGN_SPELLINGS:
        text = text.replace(sign, replacement)
    for match in _CANDIDATE.finditer(text):
        candidate = _trimmed(match.group())
        if candidate:
            found = _as_arithmetic(candidate)
            if found is not None:
                return found
    return None


def extract_expression(text: str) -> str | None:
    """The expression :func:`find_arithmetic` finds in ``text``, or None."""
    found = find_arithmetic(text)
    return found.expression if found is not None else None
