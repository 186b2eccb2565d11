"""The JSON and CSV behind the dashboard's panels, for a signed-in user (``/api/...``, the filter from the
request's query) and for a share link's viewer (``/share/TOKEN/api/...``, the link's filter and panels) alike:
``resolve`` turns a request into its ``View`` (or the answer refusing it)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from footprint import csvexport, goalstats, goalstore
from footprint.compare import Periods, clickhouse_compared, compared, run_both
from footprint.dashboard.view import CHARTS, VISITS, View
from footprint.dashboard.web import HEADERS
from footprint.settings import Settings
from footprint.stats import LIVE_MINUTES, QUERIES, QueryResult, Rows, approximated, run_clickhouse, run_stats

Resolve = Callable[[Request], View | Response]
EXPORTED = (*CHARTS, "live_per_minute", *VISITS, goalstats.GOALS, goalstats.FUNNELS)  # a panel's CSV


def unavailable(exc: Exception) -> JSONResponse:
    return JSONResponse({"error": "unavailable", "detail": str(exc)[:300]}, 503, headers=HEADERS)


def _charts(settings: Settings, view: View, names: tuple[str, ...], page: bool = False
            ) -> tuple[dict[str, Rows], dict[str, Any] | None]:
    """``names`` of the view on ClickHouse and, comparing, each one's comparison with the previous period
    (``page``: as the page asks them: its estimates and only the columns its charts draw, ``stats.clickhouse_sql``;
    else exact and whole)."""
    charts = run_clickhouse(settings, view.filter, names, page)
    if not view.compare:
        return charts, None
    periods = Periods.of(view.filter, datetime.now(UTC))
    return charts, {**periods.describe(), "charts": clickhouse_compared(settings, periods, charts, page)}


def _goals(settings: Settings, view: View, shown: tuple[str, ...]
           ) -> tuple[dict[str, Any], dict[str, Rows], dict[str, Rows]]:
    """The view's goals and funnels panels of ``shown``: the definitions in force, and their statistics on
    ClickHouse (those there are: without goals neither) and, comparing, each one's comparison with the previous
    period (``compare.compared``; else none)."""
    definitions = goalstore.definitions(settings)
    found = goalstats.run_clickhouse(settings, view.filter, definitions)
    rows = {name: found[name] for name in shown if name in found}
    if not view.compare:
        return definitions.as_json(), rows, {}
    periods = Periods.of(view.filter, datetime.now(UTC))
    before = goalstats.run_clickhouse(settings, periods.previous, definitions)
    return definitions.as_json(), rows, {name: compared(name, now, before[name], periods.length)
                                         for name, now in rows.items()}


def _stores(settings: Settings, view: View) -> list[dict[str, Any]]:
    """Every statistic on both stores (and, comparing, every one of the previous period), for the stores panel."""
    previous: list[QueryResult] = []
    if view.compare:
        results, previous = run_both(settings, Periods.of(view.filter, datetime.now(UTC)), tuple(QUERIES))
    else:
        results = run_stats(settings, view.filter.since, view.filter.until, f=view.filter)
    definitions = goalstore.definitions(settings)
    results += goalstats.run_both(settings, view.filter, definitions)
    if view.compare:
        previous += goalstats.run_both(settings, Periods.of(view.filter, datetime.now(UTC)).previous, definitions)
    return [{"query": r.name + suffix, "postgres_ms": round(r.pg_ms, 2), "clickhouse_ms": round(r.ch_ms, 2),
             "same": r.same, "postgres_rows": len(r.pg_rows), "clickhouse_rows": len(r.ch_rows)}
            for suffix, rs in (("", results), (" (previous period)", previous)) for r in rs]


def add_data_routes(app: FastAPI, settings: Settings, prefix: str, resolve: Resolve) -> None:
    def answer(body: dict[str, Any], view: View) -> JSONResponse:
        share = view.share()
        return JSONResponse({**body, **({"share": share} if share else {})}, headers=HEADERS)

    @app.get(prefix + "/api/stats")
    def stats(request: Request) -> Response:
        """The charts' and the Visits panel's statistics of the view on ClickHouse (its rollup answers the
        charts in milliseconds), comparing: with the previous period's; and the visits' timeout."""
        view = resolve(request)
        if not isinstance(view, View):
            return view
        try:
            names = view.statistics(CHARTS + VISITS)
            charts, previous = _charts(settings, view, names, page=True)
        except Exception as exc:  # a store down or failing: the page says so and retries
            return unavailable(exc)
        shown = view.statistics((goalstats.GOALS, goalstats.FUNNELS))
        goals: tuple[dict[str, Any] | None, dict[str, Rows], dict[str, Rows]] = (None, {}, {})  # not shown
        try:  # the definitions live in PostgreSQL: without it the other panels are still drawn
            goals = _goals(settings, view, shown) if shown else goals
        except Exception as exc:
            goals = ({"error": str(exc)[:300], "goals": [], "funnels": []}, {}, {})
        if previous is not None:
            previous["charts"].update(goals[2])
        return answer({"filter": view.describe(), "charts": {**charts, **goals[1]}, "previous": previous,
                       "approximate": approximated(view.filter, names),
                       "goals": goals[0], "session_timeout_minutes": settings.session_timeout_minutes}, view)

    @app.get(prefix + "/api/stores")
    def stores(request: Request) -> Response:
        """Every statistic of the view on both stores, for the stores panel: both timings and whether the
        answers are the same. Asked after the charts are drawn (PostgreSQL takes seconds at millions of events)."""
        view = resolve(request)
        if not isinstance(view, View):
            return view
        if "stores" not in view.panels:
            return JSONResponse({"error": "not_shared", "detail": "this link does not share the stores panel"}, 403,
                                headers=HEADERS)
        try:
            return answer({"filter": view.describe(), "stores": _stores(settings, view)}, view)
        except Exception as exc:
            return unavailable(exc)

    @app.get(prefix + "/api/live")
    def live(request: Request) -> Response:
        """Events per minute over the last hour (ClickHouse), for the chart refreshed every few seconds;
        comparing: ``previous``, each minute beside the same minute an hour before."""
        view = resolve(request)
        if not isinstance(view, View):
            return view
        try:
            charts, previous = _charts(settings, view, view.statistics(("live_per_minute",)))
        except Exception as exc:
            return unavailable(exc)
        return answer({"minutes": LIVE_MINUTES, "refresh_seconds": settings.dashboard_refresh_seconds,
                       "rows": charts.get("live_per_minute", []), "previous": previous,
                       "now": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M")}, view)

    @app.get(prefix + "/api/export/{name}.csv")
    def export(request: Request, name: str) -> Response:
        """One statistic of the view as CSV, the rows its panel draws (``csvexport.STAT_COLUMNS``); comparing,
        its comparison: each row's previous value and change in per cent."""
        view = resolve(request)
        if not isinstance(view, View):
            return view
        if name not in EXPORTED or not view.statistics((name,)):
            return JSONResponse({"error": "not_found", "detail": f"no panel {name!r} to export here"}, 404,
                                headers=HEADERS)
        try:
            if name in (goalstats.GOALS, goalstats.FUNNELS):
                _, now, before = _goals(settings, view, (name,))
                rows = before.get(name, []) if view.compare else now.get(name, [])  # none: no goals (funnels)
            else:
                charts, previous = _charts(settings, view, (name,))
                rows = previous["charts"][name] if previous else charts[name]
        except Exception as exc:
            return unavailable(exc)
        day = datetime.now(UTC).strftime("%Y-%m-%d")
        return StreamingResponse(csvexport.stream(csvexport.stat_header(name, view.compare), rows),
                                 media_type="text/csv; charset=utf-8", headers={
                                     **HEADERS, "Content-Disposition": f'attachment; filename="{name}-{day}.csv"'})
