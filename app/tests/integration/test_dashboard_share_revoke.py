"""Revoking a share link (issue 35 item 5) in a real browser against a real ``footprint dashboard`` process (reader
credentials only) and PostgreSQL: a link made with the Share form opens without a login until its owner revokes it
with the form's Revoke; from then on its page and every one of its API answers are 410 saying it was revoked,
while another link stays open; revoking needs a session and a link of this dashboard, still open."""

from __future__ import annotations

from typing import Any

import httpx
from test_dashboard import (
    KEY,
    _signed_in,
    _updated,
    _watch,
    dashboard,  # noqa: F401 (the module's own dashboard, data and process: a fixture)
)


def _made(page: Any) -> str:
    """A share link of the page's view (the form's defaults: every panel, 7 days), made with the Share form."""
    page.click("#share summary")
    page.click("#share-form button[type=submit]")
    page.wait_for_selector("#share-url:not([hidden])")  # its value set first
    url: str = page.input_value("#share-url")
    page.click("#share summary")  # closed again
    return url


def test_a_revoked_share_link_stops_working(dashboard: dict[str, Any]) -> None:  # noqa: F811
    base = dashboard["base"]
    with _signed_in(base) as (browser, page, errors):
        url = _made(page)
        other = page.request.post(base + "/api/share", data='{"query": "range=7", "panels": ["views_per_day"],'
                                  ' "expires_seconds": 3600}', headers={"Content-Type": "application/json"}).json()
        viewer = browser.new_context()
        shared = viewer.new_page()
        viewer_errors: list[str] = []
        _watch(shared, viewer_errors)
        assert shared.goto(url).status == 200
        _updated(shared, 0)
        token = url.rsplit("/", 1)[-1]
        with httpx.Client(base_url=base, timeout=30) as c:
            assert c.get(f"/share/{token}/api/stats").status_code == 200

        page.click("#share summary")
        assert page.input_value("#share-revoke-url") == url  # the link just made, ready to revoke
        page.click("#share-revoke")
        page.wait_for_function("() => document.getElementById('share-revoke-meta').textContent.includes('Revoked')")
        assert "opens nothing" in page.inner_text("#share-revoke-meta")

        answer = shared.goto(url)
        assert answer is not None and answer.status == 410
        assert "revoked by its owner" in shared.inner_text("#refused")
        with httpx.Client(base_url=base, timeout=30) as c:
            for path in ("api/stats", "api/live", "api/stores", "api/export/top_links.csv"):
                refused = c.get(f"/share/{token}/{path}")
                assert refused.status_code == 410 and refused.json()["error"] == "revoked", (path, refused.text)
            assert c.get(other["url"] + "/api/stats").status_code == 200  # only that link
        # revoked again: refused, saying so, on the page too
        page.click("#share-revoke")
        page.wait_for_function("() => document.getElementById('share-revoke-meta').textContent.includes('could not')")
        assert "revoked by its owner" in page.inner_text("#share-revoke-meta")
    # the owner's page logged the refused second revocation, the viewer's the revoked link's page (410)
    assert errors == ["Failed to load resource: the server responded with a status of 410 (Gone)"], errors
    assert viewer_errors == ["Failed to load resource: the server responded with a status of 410 (Gone)"], viewer_errors


def test_revoking_needs_a_session_and_a_link_of_this_dashboard(dashboard: dict[str, Any]) -> None:  # noqa: F811
    base = dashboard["base"]
    with httpx.Client(base_url=base, timeout=30) as c:
        assert c.post("/api/share/revoke", json={"url": "/share/x.y"}).status_code == 401
        c.post("/login", content="secret=" + KEY, headers={"Content-Type": "application/x-www-form-urlencoded"})
        made = c.post("/api/share", json={"query": "range=7", "panels": ["visits"], "expires_seconds": 60}).json()
        token = made["url"].rsplit("/", 1)[-1]
        forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
        for body, status in (({"url": base + "/share/" + forged}, 403), ({"link": made["url"]}, 400),
                             ({"url": 1}, 400), ("not a link", 400)):
            answer = c.post("/api/share/revoke", json=body)
            assert answer.status_code == status, (body, answer.text)
        assert c.post("/api/share/revoke", content=b"{not json").status_code == 400
        assert c.get(made["url"] + "/api/stats").status_code == 200  # none of those revoked it
        revoked = c.post("/api/share/revoke", json={"url": token})  # the token alone names it too
        assert revoked.status_code == 200 and revoked.json()["expires_at"] == made["expires_at"]
        assert c.get(made["url"]).status_code == 410
