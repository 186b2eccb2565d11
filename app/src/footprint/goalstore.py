"""The dashboard's goals and funnels in PostgreSQL (tables ``goals`` and ``funnels``, migration 0009), and the
definitions in force: the inventory's (settings) merged with them (``goals.Definitions``).

The dashboard holds the reader's credentials; the reader role may insert into and delete from these two
tables and nothing else. A name the inventory takes cannot be given on the dashboard, an inventory's goal or
funnel cannot be deleted there, and a goal cannot be deleted while a dashboard funnel steps through it.
"""

from __future__ import annotations

from typing import Any

from footprint.goals import Definitions, Funnel, Goal, unknown_steps
from footprint.settings import Settings
from footprint.stores import pg_connect


class Refused(ValueError):
    """A change the definitions do not allow: ``status`` 404 (no such one), 409 (a conflict)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


def _load(conn: Any) -> tuple[tuple[Goal, ...], tuple[Funnel, ...]]:
    goals = tuple(Goal(name=n, event=e, page=p) for n, e, p in conn.execute(
        "SELECT name, event, page FROM goals ORDER BY created_at, name COLLATE \"C\""))
    funnels = tuple(Funnel(name=n, steps=tuple(s), within=w) for n, s, w in conn.execute(
        "SELECT name, steps, within FROM funnels ORDER BY created_at, name COLLATE \"C\""))
    return goals, funnels


def _connect(settings: Settings) -> Any:
    return pg_connect(settings.pg_reader_dsn.get_secret_value(), "reader")


def definitions(settings: Settings) -> Definitions:
    """The goals and funnels in force: the inventory's, then the dashboard's."""
    with _connect(settings) as conn:
        return Definitions.merged((settings.goals, settings.funnels), _load(conn))


def goal(settings: Settings, name: str) -> Goal:
    """The goal in force named ``name``; ``goals.UnknownGoal`` naming it when there is none."""
    return definitions(settings).goal(name)


def _taken(d: Definitions, kind: str, name: str) -> None:
    names = {x.name for x in (d.goals if kind == "goal" else d.funnels)}
    if name in names:
        where = dict(d.sources)[f"{kind}:{name}"]
        raise Refused(409, f"a {kind} named {name!r} exists already (defined in the {where})")


def add_goal(settings: Settings, goal: Goal) -> None:
    with _connect(settings) as conn:
        _taken(Definitions.merged((settings.goals, settings.funnels), _load(conn)), "goal", goal.name)
        conn.execute("INSERT INTO goals (name, event, page) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                     (goal.name, goal.event, goal.page))


def add_funnel(settings: Settings, funnel: Funnel) -> None:
    with _connect(settings) as conn:
        d = Definitions.merged((settings.goals, settings.funnels), _load(conn))
        _taken(d, "funnel", funnel.name)
        if missing := unknown_steps(funnel, d.goals):
            raise Refused(409, f"steps: {missing} are not goals (make them first)")
        conn.execute("INSERT INTO funnels (name, steps, within) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                     (funnel.name, list(funnel.steps), funnel.within))


def delete(settings: Settings, kind: str, name: str) -> None:
    """Delete the dashboard's goal or funnel (``kind``) named ``name``."""
    with _connect(settings) as conn:
        d = Definitions.merged((settings.goals, settings.funnels), _load(conn))
        source = dict(d.sources).get(f"{kind}:{name}")
        if source is None:
            raise Refused(404, f"no {kind} named {name!r}")
        if source == "inventory":
            raise Refused(409, f"the {kind} {name!r} is defined in the inventory (FOOTPRINT_{kind.upper()}S):"
                               " change it there")
        users = [f.name for f in d.funnels if kind == "goal" and name in f.steps]
        if users:
            raise Refused(409, f"the goal {name!r} is a step of the funnels {users}: delete them first")
        conn.execute("DELETE FROM goals WHERE name = %s" if kind == "goal" else "DELETE FROM funnels WHERE name = %s",
                     (name,))
