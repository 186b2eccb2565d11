"""What one dashboard page shows: the filter (the address's parameters), the previous period or not, and which
panels - all of them for a signed-in user, a share link's own set for its viewers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from footprint.contract import EVENT_TYPES, TEXT_MAX_BYTES
from footprint.goals import Goal
from footprint.goalstats import FUNNELS, GOALS
from footprint.stats import AUDIENCE, Filter

RANGES = {"1": 1, "7": 7, "30": 30, "90": 90, "365": 365, "all": 0}
TOP = 10
FILTER_PARAMETERS = ("range", "type", "link", *AUDIENCE, "goal", "compare")
NONE = "(none)"  # an audience value in the URL standing for "nothing known" (no referrer, no user agent)
COMPARE = "previous"  # compare=previous: each panel beside the previous period of the same length

# the statistics the page draws from /api/stats (the live chart has /api/live; the stores panel compares all)
CHARTS = ("views_per_day", "unique_visitors_per_day", "top_links", "methods", "top_events", "referrers", "utm_sources",
          "utm_mediums", "utm_campaigns", "browsers", "operating_systems", "devices", "countries", "bots_per_day",
          "bot_agents")
# the Visits panel's statistics, also from /api/stats: figures and two lists, no chart
VISITS = ("visits", "entry_pages", "exit_pages")
# a panel of the page -> the statistics it shows (a share link names panels)
PANELS: dict[str, tuple[str, ...]] = {**{name: (name,) for name in CHARTS}, "live_per_minute": ("live_per_minute",),
                                      "visits": VISITS, "goals": (GOALS,), "funnels": (FUNNELS,), "stores": ()}


# a goal's name -> the goal in force (goalstore.goal), ValueError naming an unknown one
GoalLookup = Callable[[str], Goal]


class BadFilter(ValueError):
    pass


def parse_filter(params: dict[str, str], today: datetime | None = None, goals: GoalLookup | None = None) -> Filter:
    """``range`` (days: 1, 7, 30, 90, 365 or all), ``type`` (an event type or all), ``link`` (a prefix),
    ``source`` (a referrer host), ``device``, ``browser``, ``os``, ``country``: each an exact value, ``(none)`` for
    nothing known, empty or absent for every value; ``goal``: a goal's name (``goals`` finds it), only the
    visitors who reached it in the range; ``compare`` (``previous`` or empty) is checked here and read by
    ``View.of``."""
    unknown = set(params) - set(FILTER_PARAMETERS)
    if unknown:
        raise BadFilter(f"unknown parameter {sorted(unknown)[0]!r} ({', '.join(FILTER_PARAMETERS)})")
    days = RANGES.get(params.get("range", "30"))
    if days is None:
        raise BadFilter(f"range: one of {', '.join(RANGES)}")
    kind = params.get("type", "page")
    if kind != "all" and kind not in EVENT_TYPES:
        raise BadFilter(f"type: one of {', '.join(EVENT_TYPES)} or all")
    link = params.get("link", "")
    if len(link.encode("utf-8", "replace")) > TEXT_MAX_BYTES or "\x00" in link:
        raise BadFilter(f"link: a prefix of at most {TEXT_MAX_BYTES} bytes")
    if params.get("compare", "") not in ("", COMPARE):
        raise BadFilter(f"compare: {COMPARE} (each panel beside the previous period) or empty")
    if params.get("compare") and not days:
        raise BadFilter("compare: all time has no previous period; choose a range of days to compare")
    audience = {name: "" if value == NONE else value for name in AUDIENCE if (value := params.get(name))}
    day = (today or datetime.now(UTC)).date()
    since = day - timedelta(days=days - 1) if days else Filter().since
    try:
        name = params.get("goal") or None
        if name is not None and goals is None:
            raise ValueError("goal: no goals are known here")
        goal = goals(name) if goals is not None and name is not None else None
        return Filter(since=since, until=day + timedelta(days=1), type="" if kind == "all" else kind, link=link,
                      top=TOP, **audience, goal=name, goal_definition=goal)
    except ValueError as exc:  # an audience value too long or holding a NUL, an unknown goal
        raise BadFilter(str(exc)) from None


@dataclass(frozen=True)
class View:
    """One page's filter, whether it compares, its panels; ``query``: the filter as the address spells it
    (empty fields left out); ``expires_at``: a share link's end."""

    filter: Filter
    compare: bool
    panels: tuple[str, ...]
    query: str
    expires_at: datetime | None = None

    @classmethod
    def of(cls, params: dict[str, str], panels: tuple[str, ...] = tuple(PANELS),
           expires_at: datetime | None = None, goals: GoalLookup | None = None) -> View:
        f = parse_filter(params, goals=goals)
        query = urlencode({name: params[name] for name in FILTER_PARAMETERS if params.get(name)})
        return cls(f, bool(params.get("compare")), panels, query, expires_at)

    def statistics(self, names: tuple[str, ...]) -> tuple[str, ...]:
        """Those of ``names`` that this view's panels show."""
        shown = {stat for panel in self.panels for stat in PANELS[panel]}
        return tuple(name for name in names if name in shown)

    def describe(self) -> dict[str, Any]:
        f = self.filter
        return {**asdict(f), "since": f.since.isoformat(), "until": f.until.isoformat(), "compare": self.compare,
                "goal_definition": f.goal_definition.as_json() if f.goal_definition else None}

    def share(self) -> dict[str, Any] | None:
        """What a share link's page needs to know: its filter (to show it), its panels, its end."""
        if self.expires_at is None:
            return None
        return {"query": self.query, "panels": list(self.panels),
                "expires_at": self.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ")}
