"""HTTP for people and programs beside the socket: the history API and the chat page."""
