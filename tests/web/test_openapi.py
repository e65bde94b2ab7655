"""The error responses and the bearer scheme that ``tashi.web.openapi`` declares for a route."""

from __future__ import annotations

from fastapi import FastAPI

from tashi.api.schemas import HealthOut
from tashi.web import openapi
from tashi.web.json import JsonResponse

ERROR_OUT = {"$ref": "#/components/schemas/ErrorOut"}


def toy_app() -> FastAPI:
    app = FastAPI(responses=openapi.DEFAULT, default_response_class=JsonResponse)

    @app.get(
        "/thing/{ref}",
        response_model=HealthOut,
        responses=openapi.error_responses(openapi.AUTHENTICATED, openapi.STORED, 404, 401),
    )
    async def thing(_: openapi.Bearer, ref: str) -> JsonResponse:
        return JsonResponse({"status": "ok", "version": ref})

    return app


def test_a_route_lists_each_error_it_can_answer_once_in_the_one_body() -> None:
    operation = toy_app().openapi()["paths"]["/thing/{ref}"]["get"]
    answers = operation["responses"]
    assert sorted(answers) == ["200", "401", "404", "500", "502", "503", "default"]
    for status in ("401", "404", "500", "502", "503", "default"):
        assert answers[status]["content"]["application/json"]["schema"] == ERROR_OUT
        assert "X-Request-Id" in answers[status]["headers"]
    assert answers["404"]["description"] == openapi.WHY[404]


def test_the_bearer_scheme_is_declared_and_required_by_the_route() -> None:
    spec = toy_app().openapi()
    scheme = spec["components"]["securitySchemes"]["bearer"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    assert spec["paths"]["/thing/{ref}"]["get"]["security"] == [{"bearer": []}]
