"""A JSON response rendered by orjson (fast for large lists; datetimes as RFC 3339).

It derives from Starlette's ``JSONResponse`` only for what FastAPI infers from that: as an app's
``default_response_class``, its routes' ``response_model`` is then documented in the OpenAPI
document (for any other class FastAPI writes the body off as a ``string``). The bytes are
orjson's, as ever: ``render`` is this class's own.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import JSONResponse


class JsonResponse(JSONResponse):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)
