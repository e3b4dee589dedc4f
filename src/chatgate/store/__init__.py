"""Durable threads, messages, the per-thread event log and runs.

``base`` holds the :class:`Store` interface and :func:`open_store`; each backend
is one module (``memory``, ``sqlite``, ``postgres``, on the shared ``sql`` layer
and its ``schema``), imported only when its URL scheme is asked for.
"""

from chatgate.store.base import Store, StoreOptions, open_store

__all__ = ["Store", "StoreOptions", "open_store"]
