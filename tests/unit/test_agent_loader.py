"""Loading the agent named by CHATGATE_AGENT (docs/protocol.md section 7)."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from chatgate.agents.base import Agent, HistoryEntry
from chatgate.agents.demo import DemoAgent
from chatgate.agents.loader import load_agent
from chatgate.errors import ConfigError
from chatgate.settings import load_settings

INSTANCES: list[object] = []


class EchoAgent:
    """An agent class: the loader instantiates it once."""

    name = "echo"

    def __init__(self) -> None:
        INSTANCES.append(self)

    async def run(
        self, history: Sequence[HistoryEntry], text: str
    ) -> AsyncIterator[dict[str, Any]]:
        yield {"type": "agent_completed", "payload": {"text": f"{len(history)}: {text}"}}


class UnnamedAgent:
    async def run(
        self, history: Sequence[HistoryEntry], text: str
    ) -> AsyncIterator[dict[str, Any]]:
        yield {"type": "agent_completed", "payload": {"text": f"{len(history)}: {text}"}}


ECHO_OBJECT = EchoAgent()


class NoRun:
    pass


class RunIsNotCallable:
    run = "not a method"


class NeedsArguments:
    def __init__(self, model: str) -> None:
        self.model = model

    async def run(
        self, history: Sequence[HistoryEntry], text: str
    ) -> AsyncIterator[dict[str, Any]]:
        yield {
            "type": "agent_completed",
            "payload": {"text": f"{self.model}/{len(history)}: {text}"},
        }


NOTHING = None


def path(attribute: str) -> str:
    return f"{__name__}:{attribute}"


def test_demo() -> None:
    loaded = load_agent("demo", demo_delay_ms=5)
    assert loaded.name == "demo"
    assert isinstance(loaded.agent, DemoAgent)
    assert isinstance(loaded.agent, Agent)


def test_class_path_is_instantiated_once() -> None:
    before = len(INSTANCES)
    loaded = load_agent(path("EchoAgent"))
    assert len(INSTANCES) == before + 1
    assert isinstance(loaded.agent, EchoAgent)
    assert loaded.agent is INSTANCES[-1]
    assert loaded.name == "echo"


def test_object_path_is_used_as_is() -> None:
    loaded = load_agent(path("ECHO_OBJECT"))
    assert loaded.agent is ECHO_OBJECT
    assert loaded.name == "echo"


def test_name_defaults_to_the_attribute() -> None:
    loaded = load_agent(path("UnnamedAgent"))
    assert isinstance(loaded.agent, UnnamedAgent)
    assert loaded.name == "UnnamedAgent"


def test_shipped_demo_by_import_path() -> None:
    loaded = load_agent("chatgate.agents.demo:DemoAgent")
    assert isinstance(loaded.agent, DemoAgent)
    assert loaded.name == "demo"


async def test_loaded_agent_runs() -> None:
    loaded = load_agent(path("EchoAgent"))
    history: list[HistoryEntry] = [{"role": "user", "content": "hi"}]
    events = [event async for event in loaded.agent.run(history, "hello")]
    assert events == [{"type": "agent_completed", "payload": {"text": "1: hello"}}]


def config_error(spec: str) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load_agent(spec)
    assert caught.value.variable == "CHATGATE_AGENT"
    assert str(caught.value).startswith("CHATGATE_AGENT: ")
    return caught.value


@pytest.mark.parametrize(
    "spec",
    [
        "chatgate_no_such_module_xyz:Agent",
        "chatgate.no_such_submodule:Agent",
        "no_such_package.sub.module:Agent",
    ],
    ids=["top-level", "submodule", "package"],
)
def test_missing_module(spec: str) -> None:
    assert "cannot import" in config_error(spec).problem


@pytest.mark.parametrize("attribute", ["Missing", "NOTHING"])
def test_missing_attribute(attribute: str) -> None:
    assert "has no attribute" in config_error(path(attribute)).problem


@pytest.mark.parametrize("attribute", ["NoRun", "RunIsNotCallable", "INSTANCES"])
def test_no_run(attribute: str) -> None:
    assert "run(history, text)" in config_error(path(attribute)).problem


def test_class_that_needs_arguments() -> None:
    assert "cannot instantiate" in config_error(path("NeedsArguments")).problem


@pytest.mark.parametrize(
    "spec",
    ["", "Demo", "chatgate.agents.demo", "chatgate.agents.demo:", ":DemoAgent", "calculator"],
)
def test_malformed_spec(spec: str) -> None:
    config_error(spec)


@pytest.mark.parametrize(
    ("source", "module"),
    [
        ("def broken(:\n", "chatgate_test_agent_syntax_error"),
        ("raise RuntimeError('no API key in this environment')\n", "chatgate_test_agent_raises"),
    ],
    ids=["syntax-error", "raises-at-import"],
)
def test_module_that_fails_to_import(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str, module: str
) -> None:
    # An agent module that cannot be imported, for whatever reason, is a boot
    # error naming the variable, not a traceback.
    (tmp_path / f"{module}.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, module, raising=False)
    config_error(f"{module}:Agent")


def test_import_path_resolves_from_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Like `python -m`: an agent module in the directory chatgate starts from
    # is found without PYTHONPATH.
    module = "chatgate_test_agent_in_cwd"
    (tmp_path / f"{module}.py").write_text(
        "class Agent:\n"
        "    name = 'from-cwd'\n"
        "    async def run(self, history, text):\n"
        "        yield {'type': 'agent_completed', 'payload': {'text': text}}\n"
    )
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in {"", str(tmp_path)}])
    monkeypatch.delitem(sys.modules, module, raising=False)
    monkeypatch.chdir(tmp_path)
    loaded = load_agent(f"{module}:Agent")
    assert loaded.name == "from-cwd"
    assert sys.path[0] == str(tmp_path)


def test_import_path_outside_the_current_directory_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = "chatgate_test_agent_elsewhere"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / f"{module}.py").write_text("class Agent:\n    async def run(self, h, t): ...\n")
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p != ""])
    monkeypatch.delitem(sys.modules, module, raising=False)
    monkeypatch.chdir(tmp_path)
    assert "cannot import" in config_error(f"{module}:Agent").problem


# The openai agent.


@pytest.fixture
def no_openai_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)


def test_openai_from_settings(no_openai_environment: None) -> None:
    from chatgate.agents.openai_chat import OpenAIChatAgent  # noqa: PLC0415 - optional extra

    settings = load_settings(openai_model="llama3.2", openai_base_url="http://localhost:11434/v1")
    loaded = load_agent("openai", settings=settings)
    assert loaded.name == "openai"
    assert isinstance(loaded.agent, OpenAIChatAgent)
    assert isinstance(loaded.agent, Agent)


def test_openai_reads_the_environment_without_settings(
    no_openai_environment: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHATGATE_OPENAI_MODEL", "gpt-4.1-mini")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key")
    assert load_agent("openai").name == "openai"


def test_openai_without_a_model(no_openai_environment: None) -> None:
    settings = load_settings(openai_base_url="http://localhost:11434/v1")
    with pytest.raises(ConfigError) as caught:
        load_agent("openai", settings=settings)
    assert caught.value.variable == "CHATGATE_OPENAI_MODEL"


def test_openai_with_a_blank_model(
    no_openai_environment: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHATGATE_OPENAI_MODEL", " ")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://localhost:8000/v1")
    with pytest.raises(ConfigError) as caught:
        load_agent("openai", settings=load_settings())
    assert caught.value.variable == "CHATGATE_OPENAI_MODEL"


def test_openai_hosted_api_without_a_key(no_openai_environment: None) -> None:
    with pytest.raises(ConfigError) as caught:
        load_agent("openai", settings=load_settings(openai_model="gpt-4.1-mini"))
    assert caught.value.variable == "OPENAI_API_KEY"


def test_openai_base_url_must_be_http(
    no_openai_environment: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "localhost:11434")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert caught.value.variable == "OPENAI_BASE_URL"


def test_openai_without_the_package(
    no_openai_environment: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # None in sys.modules makes `import openai` fail as if it were not installed.
    monkeypatch.setitem(sys.modules, "openai", None)
    monkeypatch.delitem(sys.modules, "chatgate.agents.openai_chat", raising=False)
    settings = load_settings(openai_model="m", openai_base_url="http://localhost:8080/v1")
    with pytest.raises(ConfigError) as caught:
        load_agent("openai", settings=settings)
    assert caught.value.variable == "CHATGATE_AGENT"
    assert "pip install 'chatgate[openai]'" in caught.value.problem
