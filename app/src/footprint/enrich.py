"""Enrichment: what an event's Segment-style ``context`` says about where it came from and on what.

From ``context`` (``userAgent``, ``page.referrer``, ``page.search`` / ``page.url``, ``campaign``,
``location.country``) the collector derives the columns ``contract.ENRICHED_COLUMNS`` names: the referrer's
host, the five UTM parameters, browser / OS / device class parsed from the user agent (ua-parser and its
rules; the ua-parser-rs accelerator when installed), a bot flag (crawlerdetect's list, plus ua-parser's
"Spider" device) and the country the event names (``countries.py`` adds the client address's when it
names none). Only these derived values are stored: never the user agent, the full referrer
URL, the rest of the query string or the client address.

Device classes: ``bot``, ``tablet``, ``mobile``, ``desktop``, ``other`` (a user agent nothing
matched), ``""`` (no user agent, as in most server-side calls).

Parsing a user agent costs 50-250 µs; real traffic repeats a few hundred user agents, so results
are kept in bounded LRU caches (of inputs cut to a bounded length first: a client sending huge
unique user agents cannot grow them past a few MB).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from footprint.contract import SHORT_MAX_BYTES, SHORT_MAX_CHARS, clean_text

UTM = {"utm_source": "source", "utm_medium": "medium", "utm_campaign": "name", "utm_term": "term",
       "utm_content": "content"}  # column -> key in Segment's context.campaign
UA_MAX_CHARS = 1024  # a longer user agent is cut before parsing and caching (the rules need less)
MOBILE_OS = frozenset({"iOS", "Android", "Windows Phone", "BlackBerry OS", "KaiOS", "Firefox OS", "Symbian OS",
                       "Tizen", "HarmonyOS"})
DESKTOP_OS = frozenset({"Windows", "Mac OS X", "Linux", "Ubuntu", "Fedora", "Debian", "Chrome OS", "FreeBSD",
                        "OpenBSD", "NetBSD", "Solaris", "macOS"})
REFERRER_MAX_CHARS = 2048  # a longer referrer is cut before parsing (a host is far shorter)
_NO_UTM = dict.fromkeys(UTM, "")


def _short(text: str) -> str:
    if not text:
        return ""
    return clean_text(text, SHORT_MAX_BYTES)[:SHORT_MAX_CHARS]


@lru_cache(maxsize=4096)
def referrer_host(referrer: str) -> str:
    """``https://news.example.com/a?b`` -> ``news.example.com``; a bare host is taken as it is."""
    referrer = referrer.strip()
    if not referrer:
        return ""
    try:
        host = urlsplit(referrer if "//" in referrer else "//" + referrer).hostname
    except ValueError:  # e.g. an invalid IPv6 literal
        return ""
    return _short(host or "")


def utm(campaign: Mapping[str, Any], search: str) -> dict[str, str]:
    """The five UTM columns: ``context.campaign`` first, else the page's query string."""
    if not campaign and "utm_" not in search:
        return dict(_NO_UTM)
    query = dict(parse_qsl(search.lstrip("?"), keep_blank_values=False)) if search else {}
    out = {}
    for column, key in UTM.items():
        value = campaign.get(key)
        out[column] = _short(value if isinstance(value, str) else query.get(column, ""))
    return out


@lru_cache(maxsize=8192)
def classify(user_agent: str) -> tuple[str, str, str, bool]:
    """A user agent (at most UA_MAX_CHARS: callers cut it) -> ``(browser, os, device class, bot)``."""
    if not user_agent.strip():
        return "", "", "", False
    from ua_parser import parse

    result = parse(user_agent)
    browser = result.user_agent.family if result.user_agent else ""
    os_name = result.os.family if result.os else ""
    device_family = result.device.family if result.device else ""
    bot = device_family == "Spider" or _crawlers().isCrawler(user_agent)
    return _short(browser), _short(os_name), _device_class(user_agent, os_name, device_family, bot), bool(bot)


@lru_cache(maxsize=1)
def _crawlers() -> Any:
    from crawlerdetect import CrawlerDetect

    return CrawlerDetect()


def _device_class(ua: str, os_name: str, device_family: str, bot: bool) -> str:
    if bot:
        return "bot"
    if device_family == "iPad" or "Tablet" in device_family or "Tablet" in ua or (
            os_name == "Android" and "Mobile" not in ua):
        return "tablet"
    if os_name in MOBILE_OS or "Mobi" in ua:
        return "mobile"
    if os_name in DESKTOP_OS:
        return "desktop"
    return "other"


def enrich(context: Mapping[str, Any]) -> dict[str, Any]:
    """An inbound event's ``context`` -> the values of ``contract.ENRICHED_COLUMNS``."""
    page = context.get("page")
    page = page if isinstance(page, dict) else {}
    campaign = context.get("campaign")
    campaign = campaign if isinstance(campaign, dict) else {}
    referrer = page.get("referrer")
    search = page.get("search")
    if not isinstance(search, str):
        url = page.get("url")
        search = _query_of(url) if isinstance(url, str) else ""
    user_agent = context.get("userAgent")
    browser, os_name, device, bot = (classify(user_agent[:UA_MAX_CHARS]) if isinstance(user_agent, str)
                                     else ("", "", "", False))
    out: dict[str, Any] = {
        "referrer_host": referrer_host(referrer[:REFERRER_MAX_CHARS]) if isinstance(referrer, str) else "",
        **utm(campaign, search),
        "browser": browser,
        "os": os_name,
        "device": device,
        "bot": bot,
        "country": declared_country(context),
    }
    return out


def declared_country(context: Mapping[str, Any]) -> str:
    """The country an event names itself: Segment's ``context.location.country`` when it is a two-letter
    ISO 3166-1 code (upper-cased), else ``""`` (a country's name is not a code: the address decides)."""
    location = context.get("location")
    country = location.get("country") if isinstance(location, dict) else None
    if isinstance(country, str) and len(country) == 2 and country.isascii() and country.isalpha():
        return country.upper()
    return ""


def _query_of(url: str) -> str:
    try:
        return urlsplit(url).query
    except ValueError:
        return ""
