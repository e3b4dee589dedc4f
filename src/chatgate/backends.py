"""Choosing a backend by the scheme of its URL, importing only the one asked for.

An unknown scheme, and a known one whose optional dependency is not installed,
are boot errors that name the variable (and the extra to install).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass

from chatgate.errors import ConfigError


@dataclass(frozen=True, slots=True)
class Backend:
    """Where a backend's factory lives, and the pip extra that brings its driver."""

    target: str
    extra: str | None = None


def load_backend(variable: str, scheme: str, backends: Mapping[str, Backend]) -> object:
    """Import and return the factory registered for ``scheme``.

    Raises:
        ConfigError: the scheme is unknown, or its driver is not installed.
    """
    backend = backends.get(scheme)
    if backend is None:
        known = ", ".join(sorted(backends))
        raise ConfigError(variable, f"unknown scheme {scheme!r}; known: {known}")
    module, _, name = backend.target.partition(":")
    try:
        loaded = importlib.import_module(module)
    except ImportError:
        if backend.extra is None:
            raise
        raise ConfigError(
            variable,
            f"{scheme}:// needs the {backend.extra!r} extra: "
            f"pip install 'chatgate[{backend.extra}]'",
        ) from None
    factory: object = getattr(loaded, name)
    return factory
