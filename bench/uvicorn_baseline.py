"""How both uvicorn baselines are served: the same server settings, so they compare fairly."""

from __future__ import annotations

import argparse
from typing import Any

import uvicorn


def serve_on_port_argument(app: Any) -> None:
    """Serve ``app`` on ``--port`` until SIGTERM: websockets-sansio, uvloop, httptools."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=parser.parse_args().port,
        ws="websockets-sansio",
        loop="uvloop",
        http="httptools",
        lifespan="off",
        log_level="warning",
        access_log=False,
        ws_per_message_deflate=False,
    )
