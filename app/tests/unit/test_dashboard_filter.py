"""The dashboard's one filter (issue 35): the address's parameters -> ``stats.Filter``, and the audience
part of it (source, device, browser, OS) in both stores' SQL."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from footprint.contract import SHORT_MAX_CHARS
from footprint.dashboard.app import BadFilter, parse_filter
from footprint.stats import APPROXIMATION, DRAWN, QUERIES, Filter, Params, approximated, clickhouse_sql

TODAY = datetime(2026, 12, 5, 13, 0, tzinfo=UTC)


def test_no_parameter_is_every_audience_the_last_30_days_of_page_events() -> None:
    f = parse_filter({}, TODAY)
    assert (f.since, f.until, f.type, f.link) == (date(2026, 11, 6), date(2026, 12, 6), "page", "")
    assert (f.source, f.device, f.browser, f.os) == (None, None, None, None) and f.audience() == {}


def test_the_audience_parameters_name_their_columns_and_empty_ones_are_left_out() -> None:
    f = parse_filter({"range": "7", "type": "all", "source": "news.example.com", "device": "mobile",
                      "browser": "Mobile Safari", "os": "iOS", "link": ""}, TODAY)
    assert (f.since, f.type) == (date(2026, 11, 29), "")
    assert f.audience() == {"referrer_host": "news.example.com", "device": "mobile", "browser": "Mobile Safari",
                            "os": "iOS"}
    assert parse_filter({"source": "", "device": "", "browser": "", "os": ""}, TODAY).audience() == {}


def test_none_in_parentheses_is_nothing_known() -> None:
    f = parse_filter({"source": "(none)", "device": "(none)"}, TODAY)
    assert (f.source, f.device) == ("", "")
    assert f.audience() == {"referrer_host": "", "device": ""}


@pytest.mark.parametrize(("params", "named"), [
    ({"colour": "red"},
     "unknown parameter 'colour' (range, type, link, source, device, browser, os, country, goal, compare)"),
    ({"compare": "yes"}, "compare: previous (each panel beside the previous period) or empty"),
    ({"compare": "previous", "range": "all"}, "compare: all time has no previous period"),
    ({"referrer": "x"}, "unknown parameter 'referrer'"),
    ({"source": "x" * (SHORT_MAX_CHARS + 1)}, f"source: a value of at most {SHORT_MAX_CHARS} characters"),
    ({"device": "mob\x00ile"}, "device: a value of at most"),
    ({"os": "Linux\x00"}, "os: a value of at most"),
    ({"range": "2", "source": "x"}, "range: one of"),
])
def test_bad_parameters_are_refused_naming_what_is_wrong(params: dict[str, str], named: str) -> None:
    with pytest.raises(BadFilter) as caught:
        parse_filter(params, TODAY)
    assert str(caught.value).startswith(named)


def test_the_longest_audience_value_is_taken() -> None:
    assert parse_filter({"browser": "b" * SHORT_MAX_CHARS}, TODAY).browser == "b" * SHORT_MAX_CHARS


def test_without_an_audience_clickhouse_reads_the_rollup_and_binds_no_audience_value() -> None:
    f = Filter(link="/blog")
    for name, build in QUERIES.items():
        pg, ch = build(f)
        assert "referrer_host =" not in pg + ch and "device =" not in pg + ch, name
    assert "FROM stats_hourly WHERE" in QUERIES["views_per_day"](f)[1]
    assert not {"referrer_host", "device", "browser", "os"} & set(Params.of(f).pg)


def test_the_breakdowns_read_the_daily_rollup_unless_the_filter_names_a_link() -> None:
    breakdowns = ("referrers", "utm_sources", "utm_mediums", "utm_campaigns", "browsers", "operating_systems",
                  "devices", "countries", "bots_per_day", "bot_agents")
    for name in breakdowns:
        pg, ch = QUERIES[name](Filter(type=""))
        assert "FROM breakdowns_daily WHERE" in ch and "events" not in ch.replace("sum(events)", ""), name
        assert "FROM events WHERE" in pg, name
        _pg, ch = QUERIES[name](Filter(link="/blog"))
        assert "FROM events FINAL WHERE" in ch and "startsWith(link, {link:String})" in ch, name
    assert "dimension = 'browser' AND bot " in QUERIES["bot_agents"](Filter())[1]
    assert "dimension = 'browser' AND NOT bot " in QUERIES["browsers"](Filter())[1]
    # the visitors per day: the union of each day's country sets, or the hourly rollup's under a link prefix
    assert "uniqExactMerge(visitors) FROM breakdowns_daily WHERE dimension = 'country' AND NOT bot " in \
        QUERIES["unique_visitors_per_day"](Filter())[1]
    assert "FROM links_daily WHERE" in QUERIES["unique_visitors_per_day"](Filter(link="/blog"))[1]


def test_the_top_links_read_the_links_daily_rollup_unless_the_filter_names_an_audience_or_a_goal() -> None:
    for f in (Filter(), Filter(type=""), Filter(link="/blog")):
        ch = QUERIES["top_links"](f)[1]
        assert "uniqExactMerge(visitors) FROM links_daily WHERE day >= " in ch, f
        assert "stats_hourly" not in ch and "FROM events" not in ch, f
    assert "startsWith(link, {link:String})" in QUERIES["top_links"](Filter(link="/blog"))[1]
    # under a link prefix, the visitors per day merge the links' daily sets too
    assert "uniqExactMerge(visitors) FROM links_daily WHERE" in QUERIES["unique_visitors_per_day"](Filter(link="/b"))[1]
    assert "links_daily" not in QUERIES["top_links"](Filter(device="mobile"))[1]


def test_the_page_draws_the_visitors_per_day_from_the_sketches_and_everything_else_exactly() -> None:
    names = tuple(QUERIES)
    estimated = clickhouse_sql("unique_visitors_per_day", Filter(), page=True)
    assert "uniqCombined64Merge(12)(visitors) FROM visitors_daily WHERE day >= " in estimated
    assert "type = 'page'" in estimated and "type = 'track'" in clickhouse_sql("unique_visitors_per_day",
                                                                              Filter(type="track"), page=True)
    assert approximated(Filter(), names) == {"unique_visitors_per_day": APPROXIMATION}
    # exact unless the page asks, and for every other statistic (those of DRAWN: only their drawn columns)
    assert clickhouse_sql("unique_visitors_per_day", Filter()) == QUERIES["unique_visitors_per_day"](Filter())[1]
    for name in names:
        if name != "unique_visitors_per_day":
            page = DRAWN[name](Filter()) if name in DRAWN else QUERIES[name](Filter())[1]
            assert clickhouse_sql(name, Filter(), page=True) == page, name
    # the sketches keep no link, audience or goal: such a filter is counted exactly, and the page says nothing
    for f in (Filter(link="/blog"), Filter(device="mobile")):
        exact = QUERIES["unique_visitors_per_day"](f)[1]
        assert clickhouse_sql("unique_visitors_per_day", f, page=True) == exact
        assert approximated(f, names) == {}


def test_the_page_asks_the_top_links_and_countries_for_their_views_alone_from_the_same_rows() -> None:
    assert set(DRAWN) == {"top_links", "countries"}
    for f in (Filter(), Filter(link="/blog"), Filter(device="mobile"), Filter(type="track")):
        for name in DRAWN:
            page, whole = clickhouse_sql(name, f, page=True), QUERIES[name](f)[1]
            assert "Merge(visitors)" not in page and "uniqExact(" not in page, (name, f)  # no visitor counted
            assert "uniqExact" in whole, (name, f)  # the statistic keeps its exact visitors
            # the same rows (FROM .. WHERE) and order as the whole statistic's
            assert page[page.index(" FROM "):] == whole[whole.index(" FROM "):], (name, f)


def test_every_statistic_takes_the_audience_in_both_stores() -> None:
    f = Filter(source="", device="mobile")
    params = Params.of(f)
    assert params.pg["referrer_host"] == params.ch["referrer_host"] == ""
    assert params.pg["device"] == params.ch["device"] == "mobile"
    for name, build in QUERIES.items():
        pg, ch = build(f)
        assert "referrer_host = %(referrer_host)s" in pg and "device = %(device)s" in pg, name
        assert "referrer_host = {referrer_host:String}" in ch and "device = {device:String}" in ch, name
        assert "stats_hourly" not in ch, name  # the rollup keeps no audience: its rows built from the raw events
        assert "breakdowns_daily" not in ch and "links_daily" not in ch, name  # nor do the daily ones
        assert "browser =" not in pg + ch and "os =" not in pg + ch, name
