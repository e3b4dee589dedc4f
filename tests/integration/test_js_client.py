"""The JavaScript client's own tests (``clients/js/test``), run by node against real gateways."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

CLIENT = Path(__file__).resolve().parents[2] / "clients" / "js"
MIN_NODE_MAJOR = 20
TIMEOUT_S = 600


def _node() -> str:
    """The node executable; a skip without one, except under CI, where it is a failure."""
    node = shutil.which("node")
    if node is None:
        if os.environ.get("CI") == "true":
            pytest.fail("node (20 or later) is required for the JavaScript client's tests")
        pytest.skip("node is not installed")
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=True).stdout
    found = re.match(r"v(\d+)", version)
    if found is None or int(found.group(1)) < MIN_NODE_MAJOR:
        pytest.fail(f"node {MIN_NODE_MAJOR} or later is required, found {version.strip()}")
    return node


@pytest.mark.integration
def test_js_client() -> None:
    node = _node()
    env = {
        **os.environ,
        # The gateway of this virtualenv, whatever directory the tests run from.
        "CHATGATE_TEST_BIN": str(Path(sys.executable).parent / "chatgate"),
    }
    result = subprocess.run(
        [node, "--experimental-websocket", "--test"],
        cwd=CLIENT,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-20000:] + result.stderr[-5000:]
    assert re.search(r"^# fail 0$", result.stdout, re.MULTILINE), result.stdout[-5000:]
    assert not re.search(r"^# skipped [1-9]", result.stdout, re.MULTILINE), (
        "some JavaScript tests were skipped: " + result.stdout[-5000:]
    )
