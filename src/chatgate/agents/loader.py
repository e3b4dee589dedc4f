"""Loading the agent named by ``CHATGATE_AGENT``, once, at startup.

``demo`` and ``openai`` are built in; anything else is an import path
``package.module:name`` resolved the way ``python -m`` resolves a module, with
the current directory on the path.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import cast

from chatgate.agents.base import Agent
from chatgate.errors import ConfigError
from chatgate.settings import Settings, env_name, load_settings

_VARIABLE = "CHATGATE_AGENT"


@dataclass(frozen=True, slots=True)
class LoadedAgent:
    """The agent object and the name announced in ``agent_started``."""

    name: str
    agent: Agent


def load_agent(
    spec: str, *, demo_delay_ms: int = 0, settings: Settings | None = None
) -> LoadedAgent:
    """Load ``demo``, ``openai``, or ``package.module:name``: a class or an object.

    A class is instantiated once, with no arguments. ``openai`` is configured
    from ``settings``, read from the environment when not given.

    Raises:
        ConfigError: the path cannot be imported, names nothing, or the object has no
            ``run``; the openai agent lacks its model or its package.
    """
    if spec == "demo":
        from chatgate.agents.demo import DemoAgent  # noqa: PLC0415 - only when asked for

        return LoadedAgent("demo", DemoAgent(delay_ms=demo_delay_ms))
    if spec == "openai":
        return LoadedAgent("openai", _openai_agent(settings or load_settings()))
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise ConfigError(_VARIABLE, "use 'demo', 'openai' or an import path 'package.module:name'")
    module = _import(module_name)
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


def _import(module_name: str) -> ModuleType:
    """Import ``module_name`` as ``python -m`` would find it: the current directory first."""
    cwd = str(Path.cwd())
    # "" on the path also means the current directory (the interactive interpreter).
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
    try:
        return importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - see below
        # Importing user code is a boot edge: any failure there (ImportError,
        # SyntaxError, an exception at import) is a configuration error.
        raise ConfigError(
            _VARIABLE, f"cannot import {module_name!r}: {type(exc).__name__}: {exc}"
        ) from None


def _openai_agent(settings: Settings) -> Agent:
    """The openai agent as the settings describe it; refuse a configuration that cannot work."""
    model = settings.openai_model
    if model is None:
        raise ConfigError(
            env_name("openai_model"),
            "the openai agent needs a model name, such as gpt-4.1-mini or llama3.2",
        )
    if settings.openai_base_url is None and settings.openai_api_key is None:
        raise ConfigError(
            env_name("openai_api_key"),
            "the hosted OpenAI API needs a key; for a local server set OPENAI_BASE_URL instead",
        )
    try:
        from chatgate.agents.openai_chat import OpenAIChatAgent  # noqa: PLC0415 - optional extra
    except ModuleNotFoundError as exc:
        if exc.name is None or exc.name.partition(".")[0] != "openai":
            raise
        raise ConfigError(
            _VARIABLE, "the openai agent needs the extra: pip install 'chatgate[openai]'"
        ) from None
    return OpenAIChatAgent(
        model,
        base_url=settings.openai_base_url,
        api_key=settings.openai_api_key,
        system_prompt=settings.openai_system_prompt,
        timeout_s=settings.openai_timeout_s,
    )
