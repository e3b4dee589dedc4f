"""chatgate: a WebSocket gateway for AI-agent chat."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("chatgate")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+source"
