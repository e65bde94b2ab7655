"""The anyio backend and the logged-in agent client, shared with tests/scheduler."""

from tests.scheduler.agent_fixtures import agent, anyio_backend

__all__ = ["agent", "anyio_backend"]
