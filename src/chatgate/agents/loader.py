"""Loading the agent named by ``CHATGATE_AGENT``, once, at startup."""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass
from typing import cast

from chatgate.agents.base import Agent
from chatgate.errors import ConfigError

_VARIABLE = "CHATGATE_AGENT"


@dataclass(frozen=True, slots=True)
class LoadedAgent:
    """The agent object and the name announced in ``agent_started``."""

    name: str
    agent: Agent


def load_agent(spec: str, *, demo_delay_ms: int = 0) -> LoadedAgent:
    """Load ``demo`` or ``package.module:name``: a class (instantiated once) or an object.

    Raises:
        ConfigError: the path cannot be imported, names nothing, or the object has no ``run``.
    """
    if spec == "demo":
        from chatgate.agents.demo import DemoAgent  # noqa: PLC0415 - only when asked for

        return LoadedAgent("demo", DemoAgent(delay_ms=demo_delay_ms))
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise ConfigError(_VARIABLE, "use 'demo' or an import path 'package.module:name'")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - see below
        # Importing user code is a boot edge: any failure there (ImportError,
        # SyntaxError, an exception at import) is a configuration error.
        raise ConfigError(
            _VARIABLE, f"cannot import {module_name!r}: {type(exc).__name__}: {exc}"
        ) from None
    target = getattr(module, attribute, None)
    if target is None:
        raise ConfigError(_VARIABLE, f"{module_name!r} has no attribute {attribute!r}")
    if inspect.isclass(target):
        try:
            target = target()
        except TypeError as exc:
            raise ConfigError(_VARIABLE, f"cannot instantiate {attribute}: {exc}") from None
    if not callable(getattr(target, "run", None)):
        raise ConfigError(_VARIABLE, f"{spec} has no run(history, text) method")
    name = getattr(target, "name", None)
    agent = cast("Agent", target)  # run() was checked just above
    return LoadedAgent(name if isinstance(name, str) and name else attribute, agent)
