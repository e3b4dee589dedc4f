"""The benchmark harness: chatgate measured beside python-socketio, bare uvicorn and picows.

Run it with ``make bench`` (a full run, written to ``docs/benchmarks.md``) or
``make bench-quick`` (a smoke figure, printed). Every server and every load
generator runs in its own process, and all traffic stays on 127.0.0.1.
"""
