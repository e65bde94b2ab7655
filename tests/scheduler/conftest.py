"""The e2e fixtures (the tiny guest image) for the scheduler's real-QEMU test."""

from tests.e2e.conftest import tiny_image

__all__ = ["tiny_image"]
