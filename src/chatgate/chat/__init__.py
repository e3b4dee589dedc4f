"""The chat use cases: the session, the client messages, agent runs and their recovery.

Nothing here knows about uvicorn or ASGI: a :class:`~chatgate.chat.service.ChatService`
is driven by the transport and answers with frames to send.
"""
