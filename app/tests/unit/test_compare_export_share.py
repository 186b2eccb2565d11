"""Issue 35, item 5 without the stores: the previous period of a filter and the comparison rows (compare.py),
the CSV encoding (csvexport.py: any text round-trips through a CSV reader), and share links (share.py: a
link opens its view until its end; changed or expired, it is refused saying why); the goals and funnels compared
and exported, and the goal filter (goal=NAME) in the address, in share links and in both stores' SQL."""

from __future__ import annotations

import base64
import csv
import io
import json
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from footprint import csvexport
from footprint.compare import FIGURES, LABELS, NoPreviousPeriod, Periods, change, compared, previous_plan
from footprint.dashboard.share import MAX_SECONDS, ShareLinks, ShareRefused
from footprint.dashboard.view import PANELS, BadFilter, View
from footprint.goals import Definitions, Goal
from footprint.settings import Settings
from footprint.stats import QUERIES, Filter, Params

NOW = datetime(2026, 12, 5, 13, 7, tzinfo=UTC)


def test_the_previous_period_has_the_same_length_and_ends_where_the_current_one_starts() -> None:
    p = Periods.of(Filter(since=date(2026, 11, 29), until=date(2026, 12, 6), link="/blog", device="mobile"), NOW)
    assert (p.previous.since, p.previous.until, p.length) == (date(2026, 11, 22), date(2026, 11, 29), timedelta(7))
    assert (p.previous.link, p.previous.device) == ("/blog", "mobile")
    with pytest.raises(NoPreviousPeriod, match="choose a range of days"):
        Periods.of(Filter(), NOW)  # all time: nothing before 1970


def test_change_is_exact_and_none_without_a_previous_value() -> None:
    assert change(150, 100) == 50.0 and change(1, 3) == -66.7 and change(2, 3) == -33.3
    assert change(5, 0) is None and change(0, 0) is None and change(0, 4) == -100.0
    assert change(1.25, 1.5) == -16.7


def test_series_are_aligned_one_period_later_and_filled_with_zeros() -> None:
    rows = [("2026-12-01", 5), ("2026-12-03", 2)]
    previous = [("2026-11-24", 4), ("2026-11-25", 1)]
    assert compared("views_per_day", rows, previous, timedelta(7)) == [
        ("2026-12-01", 5, 4, 25.0), ("2026-12-02", 0, 1, -100.0), ("2026-12-03", 2, 0, None)]
    live = compared("live_per_minute", [("2026-12-05T13:01", 3)], [("2026-12-05T12:01", 6)], timedelta(1))
    assert live == [("2026-12-05T13:01", 3, 6, -50.0)]


def test_top_lists_keep_their_rows_and_visits_compare_each_figure() -> None:
    rows = [("/a", 10, 4), ("/b", 3, 1)]
    assert compared("top_links", rows, [("/b", 6, 2)], timedelta(7)) == [("/a", 10, 0, None), ("/b", 3, 6, -50.0)]
    visits = compared("visits", [(4, 1, 25, 30, 1.5)], [], timedelta(7))
    assert [r[0] for r in visits] == list(FIGURES) and visits[0] == ("visits", 4, 0, None)


def test_a_top_list_asks_the_previous_period_for_its_own_labels_in_each_store() -> None:
    p = Periods.of(Filter(since=date(2026, 11, 29), until=date(2026, 12, 6)), NOW)
    planned = {q.name: q for q in previous_plan(p, tuple(QUERIES), 30, {
        name: ([("pg-label", 1)], [("ch-label", 1)]) for name in LABELS})}
    links = planned["top_links"]
    assert "link = ANY(%(labels)s)" in links.pg_sql and "link IN {labels:Array(String)}" in links.ch_sql
    assert links.params.pg["labels"] == ["pg-label"] and links.params.ch["labels"] == ["ch-label"]
    assert links.params.pg["since"] == date(2026, 11, 22)
    assert "labels" not in planned["views_per_day"].params.pg
    hour = planned["live_per_minute"].params.ch
    assert hour["live_since"] == datetime(2026, 12, 5, 11, 8, tzinfo=UTC)  # the hour before the live hour


TEXT = st.text(st.characters(exclude_characters="\x00", exclude_categories=("Cs",)), max_size=30)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(TEXT, min_size=1, max_size=6), max_size=8))
def test_any_text_round_trips_through_a_csv_reader(rows: list[list[str]]) -> None:
    """Quotes, commas, CR, LF, spaces, unicode: what a CSV reader reads back is what was written."""
    header = ["a"]
    text = b"".join(csvexport.stream(header, rows)).decode("utf-8")
    assert list(csv.reader(io.StringIO(text, newline=""))) == [header, *rows]


def test_cells_of_other_kinds() -> None:
    row = [None, True, False, 3, 1.5, {"k": "v", "n": [1, 2]}, ""]
    assert csvexport.encode([row]) == ',true,false,3,1.5,"{""k"":""v"",""n"":[1,2]}",\r\n'


def test_a_long_export_comes_in_chunks() -> None:
    chunks = list(csvexport.stream(["n"], ([i] for i in range(csvexport.CHUNK_ROWS * 2 + 1))))
    assert len(chunks) == 4 and chunks[-1] == f"{csvexport.CHUNK_ROWS * 2}\r\n".encode()


def _links(key: str = "private") -> ShareLinks:
    return ShareLinks(Settings(private_keys=[SecretStr(key)]))


def test_a_share_link_opens_its_view_until_it_expires() -> None:
    links = _links()
    made = links.make({"query": "range=7&type=page&link=%2Fblog&compare=previous", "panels": ["visits", "top_links"],
                       "expires_seconds": 60}, now=1_000_000)
    view = links.open(made.token, now=1_000_059)
    assert isinstance(view, View) and view.compare and view.filter.link == "/blog"
    assert view.panels == ("top_links", "visits") and view.statistics(tuple(QUERIES)) == (
        "top_links", "visits", "entry_pages", "exit_pages")
    assert made.as_json()["url"] == f"/share/{made.token}"
    with pytest.raises(ShareRefused, match="expired at 1970-01-12 13:47:40 UTC") as expired:
        links.open(made.token, now=1_000_061)
    assert expired.value.status == 410


def test_a_changed_or_foreign_link_is_refused() -> None:
    links = _links()
    token = links.make({"query": "range=7", "panels": ["visits"], "expires_seconds": 60}).token
    body, _, mac = token.partition(".")
    raw = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    raw["p"] = list(PANELS)  # more panels than shared
    forged = base64.urlsafe_b64encode(json.dumps(raw).encode()).rstrip(b"=").decode() + "." + mac
    for bad in (forged, token[:-2], token + "x", "nothing"):
        with pytest.raises(ShareRefused, match="signature does not match") as refused:
            links.open(bad)
        assert refused.value.status == 403
    with pytest.raises(ShareRefused):
        _links("another-key").open(token)


@pytest.mark.parametrize(("body", "named"), [
    ({"query": "range=7", "panels": ["visits"]}, "body:"),
    ({"query": "range=7", "panels": [], "expires_seconds": 60}, "panels:"),
    ({"query": "range=7", "panels": ["health"], "expires_seconds": 60}, "panels:"),
    ({"query": "range=7", "panels": ["visits"], "expires_seconds": MAX_SECONDS + 1}, "expires_seconds:"),
    ({"query": "range=7", "panels": ["visits"], "expires_seconds": True}, "expires_seconds:"),
    ({"query": "range=2", "panels": ["visits"], "expires_seconds": 60}, "range:"),
    ({"query": "range=7&range=30", "panels": ["visits"], "expires_seconds": 60}, "query: a parameter"),
])
def test_a_bad_share_request_is_refused_naming_what_is_wrong(body: dict[str, object], named: str) -> None:
    with pytest.raises(BadFilter) as caught:
        _links().make(body)
    assert str(caught.value).startswith(named)


def test_the_events_export_asks_each_page_only_when_the_one_before_is_sent() -> None:
    """``csvexport.events`` over a list of rows standing for the table: pages of ``size`` in keyset order, the
    next page asked once the rows before it were taken (nothing read ahead), every row once."""
    from footprint.contract import COLUMN_NAMES
    from footprint.query import EventQuery

    def stored(i: int) -> list[object]:
        row = {c: "" for c in COLUMN_NAMES}
        row.update(event_id=f"00000000-0000-0000-0000-{i:012d}", type="page", footprint_time="2026-12-01 10:00:00",
                   received_at="2026-12-01 10:00:00", properties="{}", traits="{}", synthetic=0, schema_version=1,
                   bot=False)
        return [row[c] for c in COLUMN_NAMES]

    table = [stored(i) for i in range(25, 0, -1)]  # one time, ids descending: the order of the real query
    asked: list[object] = []

    def run(sql: str, values: dict[str, object]) -> list[list[object]]:
        asked.append(values.get("aid"))
        after = values.get("aid")
        rows = [r for r in table if after is None or str(r[0]) < str(after)]
        return rows[:int(str(values["limit"]))]

    rows = csvexport.events(EventQuery(), NOW, run, size=10)
    first = [next(rows) for _ in range(10)]
    assert len(first) == 10 and asked == [None]  # one page read, nothing ahead
    rest = list(rows)
    assert [r[0] for r in first + rest] == [str(r[0]) for r in table]
    # each page from where the one before ended (the last page's tries of wider time windows ask the same again)
    assert list(dict.fromkeys(asked)) == [None, "00000000-0000-0000-0000-000000000016",
                                          "00000000-0000-0000-0000-000000000006"]


def test_every_statistic_has_its_csv_columns_and_no_other_is_named() -> None:
    # the CSV header table is kept beside stats.QUERIES: a statistic added there without its columns
    # would fail only when somebody exports it
    assert set(csvexport.STAT_COLUMNS) == {*QUERIES, "goals", "funnels"}


PRICING = Goal(name="Pricing", page="/pricing_*")


def test_goals_and_funnels_compare_each_figure_by_their_names() -> None:
    goals = compared("goals", [("Pricing", 3, 4, 10, 30), ("Signed up", 1, 1, 10, 10)],
                     [("Pricing", 2, 2, 8, 25), ("Signed up", 0, 0, 8, 0)], timedelta(7))
    assert goals == [("Pricing", 3, 2, 50.0, 4, 2, 100.0, 10, 8, 25.0, 30, 25, 5.0),
                     ("Signed up", 1, 0, None, 1, 0, None, 10, 8, 25.0, 10, 0, 10.0)]  # a rate: points
    funnels = compared("funnels", [("Trial", 1, "Pricing", 3, 100, 0), ("Trial", 2, "Signed up", 1, 33.3, 66.7)],
                       [("Trial", 1, "Pricing", 4, 100, 0), ("Trial", 2, "Signed up", 3, 75, 25)], timedelta(7))
    assert funnels == [("Trial", 1, "Pricing", 3, 4, -25.0, 100, 100, 0.0, 0, 0, 0.0),
                       ("Trial", 2, "Signed up", 1, 3, -66.7, 33.3, 75, -41.7, 66.7, 25, 41.7)]
    for name, rows in (("goals", goals), ("funnels", funnels)):
        assert len(csvexport.stat_header(name, True)) == len(rows[0]), name
    assert csvexport.stat_header("goals", True)[1:4] == ("visitors", "previous_visitors", "visitors_change_percent")
    assert csvexport.stat_header("funnels", True)[-1] == "drop_off_percent_change_points"


def test_the_goal_filter_chooses_the_visitors_who_reached_it_in_every_statistic_of_both_stores() -> None:
    f = Filter(goal="Pricing", goal_definition=PRICING)
    params = Params.of(f)
    assert params.pg["goal"] == params.ch["goal"] == "/pricing\\_%"  # its page pattern as a LIKE pattern
    for name, build in QUERIES.items():
        pg, ch = build(f)
        assert "visitor_id IN (SELECT visitor_id FROM events WHERE NOT synthetic" in pg, name
        assert "link LIKE %(goal)s" in pg and "link LIKE {goal:String}" in ch, name
        assert "stats_hourly" not in ch, name  # the rollup keeps no visitor's goals
    assert "AND bot AND" in QUERIES["bots_per_day"](f)[0].split("IN (")[1]  # the bots who reached it
    with pytest.raises(ValueError, match="goal"):
        Filter(goal="Pricing")  # a name without its definition
    with pytest.raises(ValueError, match="goal"):
        Filter(goal="Other", goal_definition=PRICING)


def test_the_address_and_a_share_link_name_a_goal_and_an_unknown_one_is_refused_naming_it() -> None:
    lookup = Definitions(goals=(PRICING,)).goal
    view = View.of({"range": "7", "goal": "Pricing"}, goals=lookup)
    assert (view.filter.goal, view.filter.goal_definition) == ("Pricing", PRICING) and "goal=Pricing" in view.query
    assert view.describe()["goal_definition"] == {"name": "Pricing", "page": "/pricing_*"}
    assert View.of({"goal": ""}, goals=lookup).filter.goal is None
    with pytest.raises(BadFilter, match="no goal named 'Nope' \\(the goals: 'Pricing'\\)"):
        View.of({"goal": "Nope"}, goals=lookup)
    settings = Settings(private_keys=[SecretStr("k" * 32)])
    links = ShareLinks(settings, goals=lookup)
    link = links.make({"query": "range=7&goal=Pricing", "panels": ["goals"], "expires_seconds": 60})
    assert links.open(link.token).filter.goal_definition == PRICING
    with pytest.raises(BadFilter, match="Nope"):
        links.make({"query": "goal=Nope", "panels": ["goals"], "expires_seconds": 60})
    with pytest.raises(ShareRefused, match="no goal named 'Pricing'") as gone:  # deleted since the link was made
        ShareLinks(settings, goals=Definitions().goal).open(link.token)
    assert gone.value.status == 410
