"""Tashi's Alembic environment (``env.py``) and its hand-written revisions (``versions/``)."""
