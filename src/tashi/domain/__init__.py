"""The pure domain model: ids, records, the state table, validation and errors.

Nothing in here does I/O or imports another part of Tashi; every other layer builds on it.
"""
