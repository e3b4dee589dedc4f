"""The benchmark report's targets read instruction counts as the instructions tool prints them."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench import targets

_STORES = """chat: 400 operations, from 20 sockets at once, per server
  chatgate              900,000 instructions/op   1.000x chatgate
  chatgate-sqlite     1,500,000 instructions/op   1.667x chatgate
  chatgate-pg-redis   2,250,000 instructions/op   2.500x chatgate
"""


def test_store_ratios_by_instructions_are_memorys_count_over_the_stores() -> None:
    counts = {"stores": targets.instruction_counts(_STORES)}
    found = {t.label: t for t in targets.checks([], counts)}
    sqlite = found[
        "chat round trips, SQLite ≥ 0.7x memory, by instructions per round trip from 20 sockets"
    ]
    assert sqlite.value == 0.6
    assert sqlite.goal == 0.7
    redis = found[
        "chat round trips, PostgreSQL + Redis ≥ 0.45x memory, by instructions per round trip "
        "from 20 sockets"
    ]
    assert redis.value == 0.4
    # A store the count did not measure gets no row.
    assert not any("PostgreSQL ≥ 0.5x memory, by instructions" in label for label in found)


def test_without_a_store_count_the_table_has_no_instruction_rows_for_stores() -> None:
    labels = [t.label for t in targets.checks([], {})]
    assert not any("by instructions per round trip" in label for label in labels)
