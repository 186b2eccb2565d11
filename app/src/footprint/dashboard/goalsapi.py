"""The dashboard's goals and funnels, made and deleted by the signed-in owner (``goalstore.py``):

* ``GET /api/goals``: the definitions in force, each with its ``source`` (``inventory``: read-only here,
  ``dashboard``);
* ``POST /api/goals`` ``{"name", "event"}`` or ``{"name", "page"}``; ``POST /api/funnels`` ``{"name", "steps",
  "within"}``: 201 and the definitions, 400 naming what is wrong, 409 a name taken or a step that is no goal;
* ``DELETE /api/goals/NAME``, ``DELETE /api/funnels/NAME``: 200 and the definitions, 404, 409 (the
  inventory's, or a goal a funnel steps through).
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from footprint import goalstore
from footprint.contract import loads
from footprint.dashboard.web import HEADERS
from footprint.goals import Funnel, Goal, parse_one
from footprint.settings import Settings

MAX_BODY = 16384


def _error(status: int, kind: str, detail: str) -> JSONResponse:
    return JSONResponse({"error": kind, "detail": detail}, status, headers=HEADERS)


def add_goal_routes(app: FastAPI, settings: Settings, signed_in: Callable[[Request], bool]) -> None:
    def answer(request: Request, change: Callable[[], None], status: int = 200) -> Response:
        if not signed_in(request):
            return _error(401, "unauthorized", "log in first")
        try:
            change()
        except goalstore.Refused as exc:
            return _error(exc.status, "not_found" if exc.status == 404 else "conflict", str(exc))
        except ValueError as exc:  # a bad definition, or not JSON
            return _error(400, "invalid", str(exc))
        return JSONResponse(goalstore.definitions(settings).as_json(), status, headers=HEADERS)

    async def add(request: Request, model: type[Goal] | type[Funnel]) -> Response:
        raw = await request.body()

        def change() -> None:
            if len(raw) > MAX_BODY:
                raise ValueError(f"body: at most {MAX_BODY} bytes")
            item = parse_one(model, loads(raw), model.__name__.lower())
            if isinstance(item, Goal):
                goalstore.add_goal(settings, item)
            else:
                goalstore.add_funnel(settings, item)
        return answer(request, change, 201)

    @app.get("/api/goals")
    def listed(request: Request) -> Response:
        return answer(request, lambda: None)

    @app.post("/api/goals")
    async def add_goal(request: Request) -> Response:
        return await add(request, Goal)

    @app.post("/api/funnels")
    async def add_funnel(request: Request) -> Response:
        return await add(request, Funnel)

    @app.delete("/api/{kind}/{name:path}")
    def delete(request: Request, kind: str, name: str) -> Response:
        if kind not in ("goals", "funnels"):
            return _error(404, "not_found", "DELETE /api/goals/NAME or /api/funnels/NAME")
        return answer(request, lambda: goalstore.delete(settings, kind[:-1], name))

