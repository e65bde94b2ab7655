"""Placement policies, chosen by name with ``[Scheduler] scheduler = …`` (see ``registry``)."""
