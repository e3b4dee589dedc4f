"""Agents: the interface, the loader and the built-in demo agent."""
