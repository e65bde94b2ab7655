"""Asyncio plumbing shared by the daemons: supervised background tasks and logging set-up."""
