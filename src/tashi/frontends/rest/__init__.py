"""The native HTTP/JSON API under ``/v1``, served by FastAPI (contract: ``tashi.api``)."""
