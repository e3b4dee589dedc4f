"""The calculator computes plain arithmetic and refuses everything else."""

from __future__ import annotations

import ast
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatgate.agents import calculator
from chatgate.agents.calculator import (
    MAX_EXPRESSION_LENGTH,
    MAX_NODES,
    CalculatorError,
    evaluate,
    extract_expression,
    find_arithmetic,
)


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("6*7", 42),
        ("1 + 2", 3),
        ("10 - 15", -5),
        ("(2+3) * 4", 20),
        ("2 + 3 * 4", 14),
        ("7/7", 1),
        ("1/4", 0.25),
        ("10 / 4", 2.5),
        ("7 // 2", 3),
        ("-7 // 2", -4),
        ("7 % 3", 1),
        ("-7 % 3", 2),
        ("2**10", 1024),
        ("2**-2", 0.25),
        ("2**0.5", 2**0.5),
        ("-2**2", -4),
        ("(-2)**3", -8),
        ("-(-3)", 3),
        ("+5", 5),
        ("1.5 * 2", 3),
        (".5 + .25", 0.75),
        ("0.1 + 0.2", 0.1 + 0.2),
        ("  6 * 7  ", 42),
        ("10**100", 10**100),
        ("(10**50)**2", 10**100),
        ("2**2**3", 256),
    ],
)
def test_evaluates(expression: str, expected: float) -> None:
    assert evaluate(expression) == expected


@pytest.mark.parametrize(
    ("expression", "expected_type"),
    [("6*7", int), ("7/7", int), ("4.0", int), ("1/4", float), ("2**0.5", float)],
)
def test_integral_results_are_ints(expression: str, expected_type: type) -> None:
    assert type(evaluate(expression)) is expected_type


def test_large_integral_floats_stay_floats() -> None:
    # Past 2**53 a float's "integer" digits are an approximation.
    assert evaluate("1e50 * 1") == 1e50
    assert isinstance(evaluate("1e50 * 1"), float)


@pytest.mark.parametrize(
    "expression",
    [
        "x",
        "x + 1",
        "abs(-1)",
        "__import__('os')",
        "__import__('os').system('true')",
        "(1).real",
        "'a' * 3",
        "'6*7'",
        "b'1'",
        "lambda: 1",
        "[1, 2]",
        "(1, 2)",
        "{1: 2}",
        "1 < 2",
        "1 and 2",
        "True + 1",
        "None",
        "1j",
        "2 ^ 3",
        "6 & 3",
        "1 << 1000",
        "~1",
        "not 1",
        "1 if 1 else 2",
        "[x for x in (1,)]",
        "(y := 1)",
        "f'{1}'",
        "...",
    ],
)
def test_refuses_anything_but_arithmetic(expression: str) -> None:
    with pytest.raises(CalculatorError, match=r"not allowed|only numbers"):
        evaluate(expression)


@pytest.mark.parametrize(
    "expression",
    ["", "   ", "6 *", "(1 + 2", "1 2", "import os", "6*7; 1", "1\x00+1", "01 + 1", "2 x 3"],
)
def test_refuses_what_does_not_parse(expression: str) -> None:
    with pytest.raises(CalculatorError, match="not a valid arithmetic expression"):
        evaluate(expression)


@pytest.mark.parametrize("expression", ["1/0", "1.5 / 0", "1 // 0", "5 % 0", "0 ** -1", "1/(2-2)"])
def test_division_by_zero(expression: str) -> None:
    with pytest.raises(CalculatorError, match="division by zero"):
        evaluate(expression)


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("9**9**9", "exponent"),
        ("2**101", "exponent"),
        ("2**-101", "exponent"),
        ("10**99 ** 2", "exponent"),
        ("(10**99)**100", "larger than"),
        ("99**99", "larger than"),
        ("0.001 ** -100", "larger than"),
        ("10**100 * 10", "larger than"),
        ("1e308 * 10", "larger than"),
        ("1e400", "larger than"),
        ("9" * 150, "larger than"),
        ("(-8) ** (1/3)", "not real"),
    ],
)
def test_refuses_huge_or_unreal_results(expression: str, message: str) -> None:
    with pytest.raises(CalculatorError, match=message):
        evaluate(expression)


@pytest.mark.parametrize("expression", ["9**9**9", "(10**99)**100", "99**99", "7**100 ** 2"])
def test_huge_powers_are_refused_before_they_are_computed(
    expression: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Counted, not timed: every value the evaluator produced stays within the
    # limit, so no huge integer was ever built only to be refused afterwards.
    produced: list[float] = []
    real_checked = calculator._checked

    def recording(value: object) -> float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            produced.append(value)
        return real_checked(value)

    monkeypatch.setattr(calculator, "_checked", recording)
    with pytest.raises(CalculatorError):
        evaluate(expression)
    assert produced
    assert all(abs(value) <= calculator.MAX_RESULT for value in produced)


def test_refuses_overlong_input() -> None:
    expression = "1+" * (MAX_EXPRESSION_LENGTH // 2) + "1"
    with pytest.raises(CalculatorError, match="longer than 200 characters"):
        evaluate(expression)


def test_accepts_input_at_the_length_limit() -> None:
    expression = "1" + " " * (MAX_EXPRESSION_LENGTH - 3) + "+1"
    assert len(expression) == MAX_EXPRESSION_LENGTH
    assert evaluate(expression) == 2


def test_refuses_too_many_elements() -> None:
    with pytest.raises(CalculatorError, match=r"more than \d+ elements"):
        evaluate("-" * 150 + "1")


def test_calculator_error_is_a_value_error() -> None:
    assert issubclass(CalculatorError, ValueError)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("what is 6*7?", "6*7"),
        ("What's (2+3) * 4", "(2+3) * 4"),
        ("compute 10 / 4 please", "10 / 4"),
        ("6*7", "6*7"),
        ("2^10", "2**10"),
        ("what is 2 ^ 3 ^ 2?", "2 ** 3 ** 2"),
        ("3 x 4", "3*4"),
        ("what is 3X4", "3*4"),
        ("3\N{MULTIPLICATION SIGN}4", "3*4"),
        ("8 \N{DIVISION SIGN} 2", "8 / 2"),
        ("9 \N{MINUS SIGN} 4", "9 - 4"),
        ("(2+3)x4", "(2+3)*4"),
        ("what is -3 + 4.", "-3 + 4"),
        ("what is .5 + 1", ".5 + 1"),
        ("7 // 2 and 7 % 2", "7 // 2"),
        ("(what is 6*7)", "6*7"),
        ("what is 6*7 (roughly)?", "6*7"),
        ("I have 3 apples; what is 6*7?", "6*7"),
        ("tell me 1 + 2\nthanks", "1 + 2"),
    ],
)
def test_extracts_expression(text: str, expected: str) -> None:
    assert extract_expression(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "hello",
        "what is love?",
        "42",
        "-5",
        "3.14",
        "I have 3 apples",
        "50% of people",
        "state-of-the-art",
        "a * b",
        "box x ray",
        "(((",
        "due 2024-01-15",
        "what is 6 times 7?",
    ],
)
def test_finds_no_arithmetic(text: str) -> None:
    assert extract_expression(text) is None


def test_extracted_expressions_evaluate() -> None:
    assert evaluate(extract_expression("what is 6*7?") or "") == 42
    assert evaluate(extract_expression("2^10") or "") == 1024
    assert evaluate(extract_expression("What's (2+3) x 4") or "") == 20


def test_extracts_overlong_expression_for_evaluate_to_refuse() -> None:
    expression = extract_expression("what is " + "1+" * 150 + "1?")
    assert expression is not None
    with pytest.raises(CalculatorError, match="longer than"):
        evaluate(expression)


@pytest.mark.parametrize(
    "text",
    ["(" * 100_000, "1 " * 100_000, "+" * 100_000 + "1", "1" + " " * 100_000 + "x"],
)
def test_large_input_is_never_parsed_whole(text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # The guard against quadratic work, counted rather than timed: past the
    # length limit a candidate is judged by a regular expression, not parsed.
    parsed: list[int] = []
    real_parse = calculator.ast.parse

    def counting_parse(source: str, *args: Any, **kwargs: Any) -> Any:
        parsed.append(len(source))
        return real_parse(source, *args, **kwargs)

    monkeypatch.setattr(calculator.ast, "parse", counting_parse)
    assert extract_expression(text) is None
    assert all(size <= MAX_EXPRESSION_LENGTH for size in parsed)
    assert len(parsed) <= 1


@pytest.mark.parametrize(
    "text",
    [
        "what is 6*7?",
        "(2+3) * 4 please",
        "2^10",
        "7/7",
        "1/0",
        "9**999",
        "10 % 3 and more",
        "-(4 - 10) * 2.5",
        "1+" * 99 + "1",
        "what is " + "1+" * 150 + "1?",
    ],
)
def test_found_arithmetic_evaluates_as_its_expression_does(text: str) -> None:
    # The agent evaluates the tree parsed while searching; the result, or the
    # refusal, is exactly what evaluating the expression text gives.
    found = find_arithmetic(text)
    assert found is not None
    assert found.expression == extract_expression(text)
    try:
        expected: object = evaluate(found.expression)
    except CalculatorError as error:
        expected = ("refused", str(error))
    try:
        got: object = found.evaluate()
    except CalculatorError as error:
        got = ("refused", str(error))
    assert got == expected


def test_found_arithmetic_past_the_node_limit_is_refused() -> None:
    found = find_arithmetic("1+" * 99 + "1")
    assert found is not None
    assert found.tree is not None
    with pytest.raises(CalculatorError, match=f"more than {MAX_NODES} elements"):
        found.evaluate()


def test_no_arithmetic_is_found_in_plain_text() -> None:
    assert find_arithmetic("what is love?") is None
    assert find_arithmetic("42") is None


# What candidates are made of, plus what turns them into other kinds of tree:
# names, calls, subscripts, tuples, lists, comparisons, lambdas.
_TREE_TEXT = st.text(alphabet="0123456789.+-*/%() ab,[]<=:lambd~", max_size=40)


@settings(max_examples=400, deadline=None)
@given(_TREE_TEXT)
def test_the_shape_walk_counts_what_ast_walk_visits(text: str) -> None:
    # The hand-written walk must see exactly the nodes ast.walk yields, and a
    # binary operation exactly when ast.walk meets one: the node limit and the
    # "is this arithmetic" decision both rest on it.
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError:
        return
    walked = list(ast.walk(tree))
    shape = calculator._Shape.of(tree)
    assert shape.nodes == len(walked)
    assert shape.has_operation == any(isinstance(node, ast.BinOp) for node in walked)


@pytest.mark.parametrize(
    "text", ["1+" * 99 + "1", "-(" * 40 + "1" + ")" * 40, "(1)(2)(3)", "[1, 2, (3, 4)]", "a[1:2]"]
)
def test_the_shape_walk_counts_large_and_nested_trees(text: str) -> None:
    tree = ast.parse(text, mode="eval")
    walked = list(ast.walk(tree))
    assert calculator._Shape.of(tree).nodes == len(walked)
