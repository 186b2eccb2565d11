"""Enrichment: referrer host, UTM, browser / OS / device class and the bot flag from a context."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from footprint.contract import ENRICHED_COLUMNS, canonical, validate_batch
from footprint.enrich import classify, enrich, referrer_host

CHROME_WINDOWS = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
                  "Chrome/131.0.0.0 Safari/537.36")
SAFARI_IPHONE = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
                 "Version/17.5 Mobile/15E148 Safari/604.1")
SAFARI_IPAD = ("Mozilla/5.0 (iPad; CPU OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
               "Version/17.5 Mobile/15E148 Safari/604.1")
CHROME_ANDROID_TABLET = ("Mozilla/5.0 (Linux; Android 14; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) "
                         "Chrome/131.0.0.0 Safari/537.36")
CHROME_ANDROID_PHONE = ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
                        "Chrome/131.0.0.0 Mobile Safari/537.36")
FIREFOX_LINUX = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
HEADLESS = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/131.0.0.0 "
            "Safari/537.36")


@pytest.mark.parametrize(("ua", "expected"), [
    (CHROME_WINDOWS, ("Chrome", "Windows", "desktop", False)),
    (SAFARI_IPHONE, ("Mobile Safari", "iOS", "mobile", False)),
    (SAFARI_IPAD, ("Mobile Safari", "iOS", "tablet", False)),
    (CHROME_ANDROID_TABLET, ("Chrome", "Android", "tablet", False)),
    (CHROME_ANDROID_PHONE, ("Chrome Mobile", "Android", "mobile", False)),
    (FIREFOX_LINUX, ("Firefox", "Linux", "desktop", False)),
    (GOOGLEBOT, ("Googlebot", "", "bot", True)),
    (HEADLESS, ("HeadlessChrome", "Linux", "bot", True)),  # a scripted browser is no visitor
    ("curl/8.5.0", ("curl", "", "bot", True)),
    ("", ("", "", "", False)),  # a server-side call: nothing known, nothing flagged
])
def test_user_agents_are_classified(ua: str, expected: tuple[str, str, str, bool]) -> None:
    assert classify(ua) == expected


@pytest.mark.parametrize(("referrer", "host"), [
    ("https://News.Example.com:8443/a?token=secret", "news.example.com"),
    ("news.example.com", "news.example.com"),  # the snippet sends the host only
    ("http://[::1", ""),  # not a URL
    ("", ""),
])
def test_the_referrer_is_reduced_to_its_host(referrer: str, host: str) -> None:
    assert referrer_host(referrer) == host


def test_campaign_wins_over_the_query_string_and_the_rest_of_the_query_is_dropped() -> None:
    out = enrich({"page": {"search": "?utm_source=qs&utm_medium=email&email=a@b.c"},
                  "campaign": {"source": "ctx", "name": "winter"}})
    assert (out["utm_source"], out["utm_medium"], out["utm_campaign"]) == ("ctx", "email", "winter")
    assert "a@b.c" not in str(out)
    assert enrich({"page": {"url": "https://shop.example/p?utm_term=boots"}})["utm_term"] == "boots"


def test_the_api_enriches_from_the_context_and_stores_no_context() -> None:
    body = {"batch": [{"type": "page", "anonymousId": "a", "properties": {"path": "/p"},
                       "context": {"userAgent": SAFARI_IPHONE, "ip": "203.0.113.9",
                                   "page": {"referrer": "https://t.co/x", "search": "?utm_source=tw"}}}]}
    [wire] = validate_batch(body, datetime.now(UTC), 10, enrich)
    assert {k: wire[k] for k in ENRICHED_COLUMNS} == {
        "referrer_host": "t.co", "utm_source": "tw", "utm_medium": "", "utm_campaign": "", "utm_term": "",
        "utm_content": "", "browser": "Mobile Safari", "os": "iOS", "device": "mobile", "bot": False,
        "country": ""}  # no location.country in the context: the collector's countries.located adds the address's
    assert "203.0.113.9" not in str(wire) and "context" not in wire
    [plain] = validate_batch(body, datetime.now(UTC), 10)  # without enrich: the defaults
    assert {k: plain[k] for k in ENRICHED_COLUMNS} == {k: "" if k != "bot" else False for k in ENRICHED_COLUMNS}


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=30),
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner,
                                                                                   max_size=3), max_leaves=10)
_contexts = st.fixed_dictionaries({}, optional={
    "userAgent": st.one_of(st.text(max_size=300), st.sampled_from([CHROME_WINDOWS, GOOGLEBOT, ""]), _json),
    "page": st.one_of(_json, st.fixed_dictionaries({}, optional={
        "referrer": st.one_of(st.text(max_size=100), _json), "search": st.one_of(st.text(max_size=100), _json),
        "url": st.one_of(st.text(max_size=100), _json)})),
    "campaign": st.one_of(_json, st.dictionaries(st.sampled_from(["source", "medium", "name", "term", "content"]),
                                                 st.one_of(st.text(max_size=300), _json))),
})


@settings(max_examples=300, deadline=None)
@given(context=_contexts)
def test_any_context_the_contract_accepts_enriches_into_a_storable_event(context: dict[str, Any]) -> None:
    body = {"batch": [{"type": "track", "event": "e", "userId": "u", "context": context}]}
    try:
        [wire] = validate_batch(body, datetime.now(UTC), 10, enrich)
    except ValueError:
        return  # refused as a whole (e.g. a NUL in the context): a 400, never a crash
    assert canonical(wire) == wire  # every enriched value obeys the contract: the consumer stores it as it is



def test_huge_unique_inputs_reach_the_caches_cut_to_their_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    """The parsers' LRU caches are keyed by the input: only bounded inputs may reach them."""
    import footprint.enrich as enrich_module

    seen: list[str] = []

    def spy(real: Any) -> Any:
        def call(text: str) -> Any:
            seen.append(text)
            return real(text)
        return call

    monkeypatch.setattr(enrich_module, "classify", spy(classify))
    monkeypatch.setattr(enrich_module, "referrer_host", spy(referrer_host))
    out = enrich({"userAgent": "Mozilla/5.0 " + "x" * 100_000,
                  "page": {"referrer": "https://h.example/" + "y" * 100_000}})
    assert out["referrer_host"] == "h.example"
    assert len(seen) == 2 and max(map(len, seen)) <= max(enrich_module.UA_MAX_CHARS, enrich_module.REFERRER_MAX_CHARS)
