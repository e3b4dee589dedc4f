"""The Grafana dashboard asks only for series a real gateway exports."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from support import chat, established, running_server

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "chatgate.json"
_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum")}
SERIES = re.compile(r"\b(?:chatgate|process)_[a-z_]+\b")


def queries() -> dict[str, list[str]]:
    """Every panel's PromQL expressions, by panel title."""
    board = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    found: dict[str, list[str]] = {}
    panels: list[dict[str, Any]] = board["panels"]
    for panel in panels:
        if panel["type"] != "row":
            found[panel["title"]] = [target["expr"] for target in panel["targets"]]
    return found


async def exported() -> set[str]:
    """The series names of a real gateway's /metrics after one chat."""
    async with running_server() as server, server.http() as http:
        async with server.connect(server.token("alice")) as ws:
            await established(ws)
            await chat(ws, "what is 6*7?")
        response = await http.get("/metrics")
    assert response.status_code == 200
    names: set[str] = set()
    for family in text_string_to_metric_families(response.text):
        # A labelled counter with no sample yet (no agent error so far) is still exported.
        names.update(family.name + suffix for suffix in _SUFFIXES.get(family.type, ("",)))
        names.update(sample.name for sample in family.samples)
    return names


async def test_every_panel_names_only_series_the_gateway_exports() -> None:
    names = await exported()
    unknown = {
        title: sorted(set(SERIES.findall(expr)) - names)
        for title, exprs in queries().items()
        for expr in exprs
        if set(SERIES.findall(expr)) - names
    }
    assert unknown == {}


def test_every_query_names_a_series_and_the_essential_panels_exist() -> None:
    found = queries()
    assert all(SERIES.search(expr) for exprs in found.values() for expr in exprs), found
    asked = {name for exprs in found.values() for expr in exprs for name in SERIES.findall(expr)}
    assert {
        "chatgate_connections_open",
        "chatgate_connections_closed_total",
        "chatgate_runs_total",
        "chatgate_run_first_event_seconds_bucket",
        "chatgate_store_write_seconds_bucket",
        "chatgate_broker_up",
        "chatgate_store_up",
    } <= asked
