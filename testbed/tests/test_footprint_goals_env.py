"""The inventory's goals and funnels reach the app: footprint_goals / footprint_funnels rendered into the
env files (JSON inside systemd's single quotes) and read back by the app's own settings, names with an
apostrophe, quotes and non-ASCII letters included."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from local_play import run_play
from test_clickhouse_reader_profile import FACTS, RENDER, app_settings, inventory

GOALS: list[dict[str, Any]] = [
    {"name": "Signed up", "event": "Signed Up"},
    {"name": "Pricing's page", "page": "/pricing*"},
    {"name": 'Café "docs"', "page": "/docs/*"},
]
FUNNELS: list[dict[str, Any]] = [
    {"name": "Trial", "steps": ["Pricing's page", "Signed up"]},
    {"name": "Reader's day", "steps": ['Café "docs"', "Pricing's page", "Signed up"], "within": "day"},
]


def test_the_inventorys_goals_and_funnels_reach_the_app_as_written(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    res = run_play(tmp_path, RENDER, inventory({"h1": {}}, {"h1": {}},
                                               {"footprint_goals": GOALS, "footprint_funnels": FUNNELS}), facts=FACTS)
    assert res.returncode == 0, res.stdout[-3000:]
    settings = app_settings(tmp_path / "out" / "h1.footprint.env", monkeypatch)
    assert [g.model_dump(exclude_none=True) for g in settings.goals] == GOALS
    assert [f.model_dump() for f in settings.funnels] == [
        {"name": "Trial", "steps": ("Pricing's page", "Signed up"), "within": "visit"},
        {"name": "Reader's day", "steps": ('Café "docs"', "Pricing's page", "Signed up"), "within": "day"}]
