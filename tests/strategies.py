"""Hypothesis strategies shared by the differential tests of the stores."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st


def json_values(texts: st.SearchStrategy[str], max_leaves: int) -> st.SearchStrategy[Any]:
    """Values a payload column holds: JSON with 64-bit integers and finite floats."""
    return st.recursive(
        st.none()
        | st.booleans()
        | st.integers(-(2**63), 2**63 - 1)
        | st.floats(allow_nan=False, allow_infinity=False)
        | texts,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
        max_leaves=max_leaves,
    )
