"""The e2e fixtures (the tiny guest image) for the scheduler's real-QEMU test, and the
anyio backend and logged-in agent client the hook tests share with tests/dhcpdns."""

from tests.e2e.conftest import tiny_image
from tests.scheduler.agent_fixtures import agent, anyio_backend

__all__ = ["agent", "anyio_backend", "tiny_image"]
