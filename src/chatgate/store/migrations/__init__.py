"""Alembic migrations of the SQL stores' schema, shipped inside the package.

Applied by ``SQLStore.start`` and ``chatgate migrate``; ``env.py`` runs them on
the connection those hand over (``config.attributes["connection"]``).
"""
