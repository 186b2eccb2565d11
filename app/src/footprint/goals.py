"""Goals and funnels: what they are and what makes one valid, for the inventory's (``FOOTPRINT_GOALS``,
``FOOTPRINT_FUNNELS``) and the dashboard's (stored in PostgreSQL, ``goalstore.py``) alike.

A **goal** is reached by an event: ``{"name": ..., "event": "Signed Up"}`` by a track event of that name
(exactly, case and all), ``{"name": ..., "page": "/pricing*"}`` by a page event whose link (the page's path,
without the query) matches the pattern as a whole: ``*`` matches any run of characters, ``/`` included, and
every other character only itself (``?``, ``[``, ``%`` and ``_`` too). A **funnel** is an ordered list of goals
(2 to 10 steps, by name; a goal may come back), reached step by step within one visit (``"within": "visit"``,
the default: a visitor's events at most ``FOOTPRINT_SESSION_TIMEOUT_MINUTES`` apart) or within one UTC day
(``"within": "day"``). ``goalstats.py`` counts them in both stores.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from footprint.contract import SHORT_MAX_CHARS, TEXT_MAX_BYTES

NAME_MAX_BYTES = 100
MAX_STEPS = 10
Source = Literal["inventory", "dashboard"]


def _text(value: str, what: str, limit: int) -> str:
    if not value.strip() or "\x00" in value or len(value.encode("utf-8", "replace")) > limit:
        raise ValueError(f"a non-empty text of at most {limit} bytes, without NUL ({what})")
    return value


Name = Annotated[str, AfterValidator(lambda value: _text(value, "its name", NAME_MAX_BYTES))]


class Goal(BaseModel):
    """One goal: its name and either a track event's name or a page path pattern."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Name
    event: str | None = None
    page: str | None = None

    @field_validator("event")
    @classmethod
    def _event(cls, value: str | None) -> str | None:
        return None if value is None else _text(value, "a track event's name", SHORT_MAX_CHARS)

    @field_validator("page")
    @classmethod
    def _page(cls, value: str | None) -> str | None:
        return None if value is None else _text(value, "a path pattern such as /blog/*", TEXT_MAX_BYTES)

    @model_validator(mode="after")
    def _one_kind(self) -> Goal:
        if (self.event is None) == (self.page is None):
            raise ValueError('give either "event" (a track event\'s name) or "page" (a path pattern), not both')
        return self

    def like(self) -> str:
        """The page pattern as a LIKE pattern (both stores: ``\\`` escapes ``%``, ``_`` and itself)."""
        assert self.page is not None
        escaped = self.page.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        return escaped.replace("*", "%")

    def bound(self) -> str:
        """The value ``condition`` binds: the event's name, or the page pattern as a LIKE pattern."""
        return self.event if self.event is not None else self.like()

    def condition(self, value: str) -> tuple[str, str]:
        """Whether an event reaches this goal, in each store's dialect, with ``bound()`` bound as ``value``."""
        if self.event is not None:
            return (f"(type = 'track' AND event = %({value})s)",
                    f"(type = 'track' AND event = {{{value}:String}})")
        return f"(type = 'page' AND link LIKE %({value})s)", f"(type = 'page' AND link LIKE {{{value}:String}})"

    def as_json(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class Funnel(BaseModel):
    """One funnel: its name, its steps (goal names, in order) and what they must be reached within."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Name
    steps: tuple[str, ...] = Field(min_length=2, max_length=MAX_STEPS)
    within: Literal["visit", "day"] = "visit"

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "steps": list(self.steps), "within": self.within}


def _problems(exc: ValidationError) -> str:
    return "; ".join((".".join(str(p) for p in e["loc"]) + ": " if e["loc"] else "")
                     + e["msg"].removeprefix("Value error, ") for e in exc.errors())


def parse_one(model: type[Goal] | type[Funnel], value: Any, what: str) -> Any:
    """One goal or funnel from its JSON object; ``ValueError`` naming ``what`` and every problem."""
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        raise ValueError(f"{what}: {_problems(exc)}") from None


def parse_list(model: type[Goal] | type[Funnel], value: Any, variable: str) -> tuple[Any, ...]:
    """A setting's list (JSON text, or a list already): each entry checked, the first bad one named by its
    place and name; names unique."""
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else []
        except ValueError as exc:
            raise ValueError(f"{variable}: not JSON ({exc}); want a list of objects") from None
    if not isinstance(value, list | tuple):
        raise ValueError(f"{variable}: want a JSON list of objects, not {type(value).__name__}")
    out: list[Any] = []
    for i, entry in enumerate(value):
        name = entry.get("name") if isinstance(entry, dict) else None
        what = f"{variable}[{i}]" + (f" ({name!r})" if isinstance(name, str) else "")
        item = entry if isinstance(entry, model) else parse_one(model, entry, what)
        if item.name in {o.name for o in out}:
            raise ValueError(f"{what}: the name {item.name!r} is given twice")
        out.append(item)
    return tuple(out)


def unknown_steps(funnel: Funnel, goals: tuple[Goal, ...]) -> list[str]:
    names = {g.name for g in goals}
    return [step for step in funnel.steps if step not in names]


class UnknownGoal(ValueError):
    """A goal's name that no goal in force has."""


@dataclass(frozen=True)
class Definitions:
    """The goals and funnels in force: the inventory's first, then the dashboard's (whose names the inventory
    does not take), each with where it comes from."""

    goals: tuple[Goal, ...] = ()
    funnels: tuple[Funnel, ...] = ()
    sources: tuple[tuple[str, Source], ...] = ()  # ("goal:NAME" | "funnel:NAME", source)

    @classmethod
    def merged(cls, inventory: tuple[tuple[Goal, ...], tuple[Funnel, ...]],
               dashboard: tuple[tuple[Goal, ...], tuple[Funnel, ...]]) -> Definitions:
        goals, funnels = list(inventory[0]), list(inventory[1])
        sources: list[tuple[str, Source]] = [(f"goal:{g.name}", "inventory") for g in goals]
        sources += [(f"funnel:{f.name}", "inventory") for f in funnels]
        for goal in dashboard[0]:
            if goal.name not in {g.name for g in goals}:
                goals.append(goal)
                sources.append((f"goal:{goal.name}", "dashboard"))
        for funnel in dashboard[1]:
            if funnel.name not in {f.name for f in funnels}:
                funnels.append(funnel)
                sources.append((f"funnel:{funnel.name}", "dashboard"))
        return cls(tuple(goals), tuple(funnels), tuple(sources))

    def goal(self, name: str) -> Goal:
        """The goal named ``name``; ``UnknownGoal`` naming it (and the goals there are) when there is none."""
        for goal in self.goals:
            if goal.name == name:
                return goal
        known = ", ".join(repr(g.name) for g in self.goals) or "none is defined"
        raise UnknownGoal(f"goal: no goal named {name!r} (the goals: {known})")

    def counted_funnels(self) -> tuple[Funnel, ...]:
        """The funnels whose steps all name a goal (a dashboard's funnel may outlive an inventory goal)."""
        return tuple(f for f in self.funnels if not unknown_steps(f, self.goals))

    def as_json(self) -> dict[str, Any]:
        source = dict(self.sources)
        return {"goals": [{**g.as_json(), "source": source[f"goal:{g.name}"]} for g in self.goals],
                "funnels": [{**f.as_json(), "source": source[f"funnel:{f.name}"],
                             "unknown_steps": unknown_steps(f, self.goals)} for f in self.funnels]}
