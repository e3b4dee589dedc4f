"""Identifiers: unguessable, and rising with time so that indexes keyed by them grow at one end."""

from __future__ import annotations

import re
import time

from chatgate.models import new_id

_SHAPE = re.compile(r"th_[0-9a-f]{12}[0-9a-f]{24}")


def test_an_id_is_its_prefix_the_millisecond_and_96_random_bits() -> None:
    before = time.time_ns() // 1_000_000
    made = new_id("th")
    after = time.time_ns() // 1_000_000
    assert _SHAPE.fullmatch(made), made
    assert before <= int(made[3:15], 16) <= after


def test_ids_made_in_a_later_millisecond_sort_after_earlier_ones() -> None:
    earlier = [new_id("run") for _ in range(50)]
    time.sleep(0.002)
    later = [new_id("run") for _ in range(50)]
    assert max(earlier) < min(later)


def test_ids_made_in_one_millisecond_still_differ() -> None:
    made = [new_id("msg") for _ in range(5000)]
    assert len(set(made)) == len(made)
    # The random part is what differs: no two share it.
    assert len({m[-24:] for m in made}) == len(made)
