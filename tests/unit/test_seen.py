"""SeenRanges behaves as a set of positive integers, stored as compact ranges."""

from __future__ import annotations

import random

import pytest

from chatgate.chat.seen import SeenRanges


def test_empty() -> None:
    seen = SeenRanges()
    assert 1 not in seen
    assert seen.highest == 0
    assert seen.ranges() == []


def test_add_reports_duplicates() -> None:
    seen = SeenRanges()
    assert seen.add(5) is True
    assert seen.add(5) is False
    assert 5 in seen
    assert 4 not in seen
    assert 6 not in seen


def test_contiguous_adds_stay_one_range() -> None:
    seen = SeenRanges()
    for value in range(1, 1001):
        assert seen.add(value)
    assert seen.ranges() == [(1, 1000)]
    assert seen.highest == 1000


def test_gap_filled_from_both_sides_merges() -> None:
    seen = SeenRanges()
    for value in (1, 2, 4, 5):
        seen.add(value)
    assert seen.ranges() == [(1, 2), (4, 5)]
    assert seen.add(3) is True
    assert seen.ranges() == [(1, 5)]


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([3, 1], [(1, 1), (3, 3)]),
        ([3, 2], [(2, 3)]),
        ([2, 3], [(2, 3)]),
        ([10, 1, 5], [(1, 1), (5, 5), (10, 10)]),
        ([10, 9, 8, 1, 2, 3], [(1, 3), (8, 10)]),
        ([5, 7, 6], [(5, 7)]),
    ],
    ids=["apart", "joins-right", "joins-left", "three-apart", "two-runs", "bridge"],
)
def test_ranges(values: list[int], expected: list[tuple[int, int]]) -> None:
    seen = SeenRanges()
    for value in values:
        seen.add(value)
    assert seen.ranges() == expected
    assert seen.highest == max(values)


def test_non_integers_are_never_contained() -> None:
    seen = SeenRanges()
    seen.add(1)
    assert "1" not in seen
    assert None not in seen
    assert 1.5 not in seen


def _as_ranges(values: set[int]) -> list[tuple[int, int]]:
    ranges: list[tuple[int, int]] = []
    for value in sorted(values):
        if ranges and ranges[-1][1] == value - 1:
            ranges[-1] = (ranges[-1][0], value)
        else:
            ranges.append((value, value))
    return ranges


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_matches_a_plain_set(seed: int) -> None:
    rng = random.Random(seed)  # noqa: S311 - reproducible test values, not secrets
    seen = SeenRanges()
    reference: set[int] = set()
    for _ in range(3000):
        value = rng.randint(1, 400)
        assert seen.add(value) is (value not in reference)
        reference.add(value)
        probe = rng.randint(0, 401)
        assert (probe in seen) is (probe in reference)
    assert seen.ranges() == _as_ranges(reference)
    assert seen.highest == max(reference)
    for value in range(402):
        assert (value in seen) is (value in reference)
