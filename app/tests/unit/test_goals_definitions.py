"""goals.py and the settings FOOTPRINT_GOALS / FOOTPRINT_FUNNELS: what a valid definition is, and errors that name
the bad entry (its place, its name) and the cause; the page pattern as both stores' LIKE pattern."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from footprint.goals import Definitions, Funnel, Goal
from footprint.goalstats import planned
from footprint.settings import GoalSettings, Settings
from footprint.stats import Filter, Params

GOOD = [{"name": "Signed up", "event": "Signed Up"}, {"name": "Pricing", "page": "/pricing*"}]


def _settings(goals: Any = GOOD, funnels: Any = (), monkeypatch: pytest.MonkeyPatch | None = None) -> Settings:
    assert monkeypatch is not None
    monkeypatch.setenv("FOOTPRINT_GOALS", goals if isinstance(goals, str) else json.dumps(goals))
    monkeypatch.setenv("FOOTPRINT_FUNNELS", funnels if isinstance(funnels, str) else json.dumps(list(funnels)))
    return Settings()


def test_the_inventory_definitions_are_read_typed(monkeypatch: pytest.MonkeyPatch) -> None:
    s = _settings(funnels=[{"name": "Trial", "steps": ["Pricing", "Signed up"]},
                           {"name": "Daily", "steps": ["Pricing", "Pricing", "Signed up"], "within": "day"}],
                  monkeypatch=monkeypatch)
    assert s.goals == (Goal(name="Signed up", event="Signed Up"), Goal(name="Pricing", page="/pricing*"))
    assert [(f.name, f.steps, f.within) for f in s.funnels] == [("Trial", ("Pricing", "Signed up"), "visit"),
                                                               ("Daily", ("Pricing", "Pricing", "Signed up"), "day")]
    monkeypatch.delenv("FOOTPRINT_GOALS")
    monkeypatch.delenv("FOOTPRINT_FUNNELS")
    assert Settings().goals == () and Settings().funnels == ()  # none by default


@pytest.mark.parametrize(("goals", "said"), [
    ([*GOOD, {"name": "Both", "event": "x", "page": "/y"}], "FOOTPRINT_GOALS[2] ('Both'): give either"),
    ([{"name": "Neither"}], "FOOTPRINT_GOALS[0] ('Neither'): give either"),
    ([{"event": "x"}], "FOOTPRINT_GOALS[0]: name: Field required"),
    ([{"name": "", "event": "x"}], "FOOTPRINT_GOALS[0] (''): name: a non-empty text"),
    ([{"name": "n", "page": "/a\x00"}], "FOOTPRINT_GOALS[0] ('n'): page: a non-empty text"),
    ([{"name": "n", "event": "e" * 201}], "FOOTPRINT_GOALS[0] ('n'): event"),
    ([{"name": "n", "event": "x", "when": "now"}], "FOOTPRINT_GOALS[0] ('n'): when: Extra inputs"),
    ([GOOD[0], GOOD[0]], "FOOTPRINT_GOALS[1] ('Signed up'): the name 'Signed up' is given twice"),
    ([1], "FOOTPRINT_GOALS[0]: Input should be a valid dictionary"),
    ('{"name": "n"}', "FOOTPRINT_GOALS: want a JSON list of objects, not dict"),
    ("[{name: n}]", "FOOTPRINT_GOALS: not JSON"),
])
def test_a_bad_goal_is_named_with_its_cause(goals: Any, said: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValidationError) as caught:
        _settings(goals, monkeypatch=monkeypatch)
    assert said in str(caught.value)


@pytest.mark.parametrize(("funnels", "said"), [
    ([{"name": "F", "steps": ["Pricing", "Paid"]}], "FOOTPRINT_FUNNELS[0] ('F'): steps ['Paid'] are not goals"),
    ([{"name": "F", "steps": ["Pricing"]}], "FOOTPRINT_FUNNELS[0] ('F'): steps: Tuple should have at least 2"),
    ([{"name": "F", "steps": ["Pricing"] * 11}], "FOOTPRINT_FUNNELS[0] ('F'): steps: Tuple should have at most 10"),
    ([{"name": "F", "steps": ["Pricing", "Pricing"], "within": "week"}],
     "FOOTPRINT_FUNNELS[0] ('F'): within: Input should be 'visit' or 'day'"),
    ([{"name": "F", "steps": ["Pricing", "Pricing"]}, {"name": "F", "steps": ["Pricing", "Pricing"]}],
     "FOOTPRINT_FUNNELS[1] ('F'): the name 'F' is given twice"),
])
def test_a_bad_funnel_is_named_with_its_cause(funnels: Any, said: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValidationError) as caught:
        _settings(funnels=funnels, monkeypatch=monkeypatch)
    assert said in str(caught.value)


def test_the_part_alone_checks_the_steps() -> None:
    with pytest.raises(ValidationError, match="steps \\['b'\\] are not goals"):
        GoalSettings(goals=[{"name": "a", "event": "x"}], funnels=[{"name": "f", "steps": ["a", "b"]}])


@pytest.mark.parametrize(("page", "like"), [
    ("/pricing", "/pricing"), ("/blog/*", "/blog/%"), ("*kafka*", "%kafka%"), ("/a_b", "/a\\_b"),
    ("/100%", "/100\\%"), ("/x\\y*", "/x\\\\y%"), ("/?[a]", "/?[a]"),
])
def test_a_page_pattern_is_a_like_pattern_with_only_the_star_special(page: str, like: str) -> None:
    assert Goal(name="g", page=page).like() == like


def test_the_inventory_wins_a_name_and_a_funnel_of_unknown_steps_is_not_counted() -> None:
    inventory = ((Goal(name="a", event="x"),), (Funnel(name="f", steps=("a", "a")),))
    dashboard = ((Goal(name="a", page="/"), Goal(name="b", page="/b")),
                 (Funnel(name="f", steps=("b", "b")), Funnel(name="g", steps=("a", "gone"))))
    d = Definitions.merged(inventory, dashboard)
    assert [(g.name, g.event, g.page) for g in d.goals] == [("a", "x", None), ("b", None, "/b")]
    assert [f.name for f in d.funnels] == ["f", "g"] and [f.name for f in d.counted_funnels()] == ["f"]
    shown = d.as_json()
    assert [g["source"] for g in shown["goals"]] == ["inventory", "dashboard"]
    assert [(f["source"], f["unknown_steps"]) for f in shown["funnels"]] == [("inventory", []), ("dashboard", ["gone"])]
    f = Filter()
    assert [p.name for p in planned(f, d, Params.of(f))] == ["goals", "funnels"]
    assert planned(f, Definitions(), Params.of(f)) == []
    only_goals = Definitions.merged(((Goal(name="a", event="x"),), ()), ((), ()))
    assert [p.name for p in planned(f, only_goals, Params.of(f))] == ["goals"]
