"""Where cluster state lives: the repository contract, an in-memory fake, and the SQL store.

``contract.py`` says what a store promises (mostly prose), ``shared.py`` is what every store runs
alike to keep it (bounds checked before writes...); ``memory.py`` is the fake for unit
tests and simulations; ``sql/`` is the real one (SQLite, PostgreSQL, MariaDB) with Alembic
migrations. ``tests/storage/test_contract.py`` runs the same suite over all of them.
"""
