"""Delivering a user's events to every socket of the user, on any instance.

``base`` holds the :class:`Broker` interface and :func:`open_broker`; ``memory``
serves one process, ``redis`` several, imported only when asked for.
"""

from chatgate.broker.base import Broker, BrokerOptions, open_broker

__all__ = ["Broker", "BrokerOptions", "open_broker"]
