"""A deployment that forgot something fails closed; what a hostile client sends is refused.

The tier follows the listening address when nothing names it, an empty admin
token opens nothing, a test key equal to the JWT secret stops the boot, and
malformed frames get ``error`` frames or a close of the table, never 1011.
"""

from __future__ import annotations

import pytest

from processes import free_port, run_cli
from support import E2E_KEY, SECRET, running_server

_CONFIG_ERROR = 2


def _one_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output
    return lines[0]


def test_listening_on_every_interface_without_a_tier_is_production() -> None:
    result = run_cli("serve", "--host", "0.0.0.0", "--port", str(free_port()))  # noqa: S104
    assert result.returncode == _CONFIG_ERROR, result.stdout + result.stderr
    line = _one_line(result.stdout + result.stderr)
    assert "CHATGATE_JWT_SECRET" in line
    assert "production" in line


def test_kubernetes_without_a_tier_is_production() -> None:
    result = run_cli("serve", "--port", str(free_port()), KUBERNETES_SERVICE_HOST="10.96.0.1")
    assert result.returncode == _CONFIG_ERROR, result.stdout + result.stderr
    assert "CHATGATE_JWT_SECRET" in _one_line(result.stdout + result.stderr)


def test_a_test_key_equal_to_the_jwt_secret_stops_the_boot() -> None:
    result = run_cli(
        "serve",
        "--port",
        str(free_port()),
        ENVIRONMENT="staging",
        CHATGATE_JWT_SECRET=SECRET,
        E2E_OAUTH_SIMULATION_KEY=SECRET,
    )
    output = result.stdout + result.stderr
    assert result.returncode == _CONFIG_ERROR, output
    line = _one_line(output)
    assert line.startswith("chatgate: configuration error: E2E_OAUTH_SIMULATION_KEY:"), line
    assert SECRET not in output


@pytest.mark.parametrize("admin_token", ["", "   "])
# The server strips the trailing space of "Bearer ": it arrives as "Bearer".
@pytest.mark.parametrize("presented", ["Bearer", None])
async def test_an_empty_admin_token_opens_nothing(admin_token: str, presented: str | None) -> None:
    async with (
        running_server(environment="production", admin_token=admin_token) as server,
        server.http() as http,
    ):
        headers = {"Authorization": presented} if presented is not None else {}
        response = await http.get("/diagnostics", headers=headers)
    assert response.status_code == 403
    assert "tier" not in response.json()


async def test_a_distinct_test_key_still_boots() -> None:
    async with (
        running_server(environment="staging", e2e_oauth_simulation_key=E2E_KEY) as server,
        server.http() as http,
    ):
        assert (await http.get("/healthz")).status_code == 200
