"""The socket's transport: the uvicorn server, the upgrade, the send path, per-socket limits.

Everything here is about bytes and frames; what a message means is ``chatgate.chat``'s.
Every reach into uvicorn's and websockets' internals is in ``uvicorn_ws``.
"""
