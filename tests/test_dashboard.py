"""Smoke checks of the read side: the dashboard (its unit, its reader-only env file, its login with
the generated secret) and the read API on the collector (a private key reads, a public key does
not), with a synthetic probe that shows in the events API (asked for) and never in the stats.

    .venv/bin/pytest tests/test_dashboard.py --hosts=ansible://app --ansible-inventory=INVENTORY
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml  # type: ignore[import-untyped]
from conftest import secret, setting, web_scheme, web_verify

testinfra_hosts = ["ansible://app"]

ROLE_VARS: dict[str, Any] = yaml.safe_load(
    (Path(__file__).resolve().parent.parent / "roles" / "footprint" / "vars" / "main.yml").read_text())
SERVICE = ROLE_VARS["__footprint_dashboard_service"]
# settings the dashboard must not have: it reads with the reader credentials only
NOT_FOR_THE_DASHBOARD = ("FOOTPRINT_PG_DSN=", "FOOTPRINT_PG_OWNER_DSN=", "FOOTPRINT_CH_PASSWORD=",
                         "FOOTPRINT_CH_OWNER_PASSWORD=", "FOOTPRINT_API_KEYS=")


@pytest.fixture(scope="module")
def enabled(hostvars: dict[str, Any]) -> None:
    if not setting(hostvars, "footprint_dashboard_enabled"):
        pytest.skip("footprint_dashboard_enabled is false in this inventory")


@pytest.fixture(scope="module")
def dashboard(hostvars: dict[str, Any], address: str, enabled: None) -> str:
    host = setting(hostvars, "footprint_dashboard_host")
    if host in ("127.0.0.1", "::1", "localhost"):
        pytest.skip("the dashboard listens on loopback only on this host: not reachable from the control node")
    reach = address if host in ("0.0.0.0", "::") else host
    return f"{web_scheme(hostvars)}://{reach}:{setting(hostvars, 'footprint_dashboard_port')}"


def test_dashboard_unit_runs_with_reader_credentials_only(host: Any, hostvars: dict[str, Any], enabled: None) -> None:
    svc = host.service(SERVICE)
    assert svc.is_enabled and svc.is_running
    env_path = host.check_output(f"systemctl show {SERVICE} -p EnvironmentFiles --value").split()[0]
    env = host.file(env_path)
    assert env.mode == 0o600 and env.user == "root"
    content = env.content_string
    assert "FOOTPRINT_CH_READER_PASSWORD=" in content and "FOOTPRINT_PG_READER_DSN=" in content
    assert not [name for name in NOT_FOR_THE_DASHBOARD if name in content]
    assert host.check_output(f"systemctl show {SERVICE} -p User --value") == setting(hostvars, "footprint_user")


def test_dashboard_listens_on_its_configured_address(host: Any, hostvars: dict[str, Any], enabled: None) -> None:
    listen = setting(hostvars, "footprint_dashboard_host")
    assert host.socket(f"tcp://{listen}:{int(setting(hostvars, 'footprint_dashboard_port'))}").is_listening


def test_dashboard_login_with_the_generated_secret(hostvars: dict[str, Any], dashboard: str) -> None:
    password = secret(hostvars, "footprint_dashboard_password")
    private = secret(hostvars, "footprint_private_keys")
    with httpx.Client(base_url=dashboard, timeout=30, verify=web_verify(hostvars)) as c:
        assert c.get("/healthz").json()["status"] == "ok"
        assert c.get("/api/stats").status_code == 401
        assert c.post("/login", data={"secret": "not-the-password"}).status_code == 401
        for given in (password, private):
            c.cookies.clear()
            r = c.post("/login", data={"secret": given.reveal()})
            assert r.status_code == 303, "the generated secret was refused"
            assert c.get("/api/stats", params={"range": "1"}).status_code == 200
        page = c.get("/")
        assert page.status_code == 200 and "chart.umd.min.js" in page.text
        assert c.get("/static/chart.umd.min.js").status_code == 200  # vendored into the wheel, no CDN


def _read(collector: str, key: str, params: dict[str, str], verify: str | bool = True) -> Any:
    return httpx.get(f"{collector}/v1/events", params=params, headers={"Authorization": f"Bearer {key}"}, timeout=30,
                     verify=verify)


def test_a_probe_shows_in_the_events_api_and_never_in_the_stats(hostvars: dict[str, Any], address: str,
                                                                 dashboard: str) -> None:
    collector = f"{web_scheme(hostvars)}://{address}:{setting(hostvars, 'footprint_collector_port')}"
    verify = web_verify(hostvars)
    public = secret(hostvars, "footprint_api_keys").reveal()
    private = secret(hostvars, "footprint_private_keys").reveal()
    link = f"/footprint-smoke/{uuid.uuid4().hex}"
    probe = {"type": "page", "anonymousId": "footprint-smoke", "properties": {"path": link, "footprint_probe": True}}

    def charts() -> dict[str, Any]:  # every chart of the dashboard under a filter only the probe can match
        with httpx.Client(base_url=dashboard, timeout=30, verify=verify) as c:
            assert c.post("/login", data={"secret": private}).status_code == 303
            return dict(c.get("/api/stats", params={"range": "1", "link": link}).json()["charts"])

    before = charts()  # nothing there yet: empty charts, and rows of zeros (visits; each goal and funnel step)
    r = httpx.post(collector + "/v1/events", json={"batch": [probe]}, headers={"Authorization": f"Bearer {public}"},
                   timeout=10, verify=verify)  # a synthetic page view
    assert r.status_code == 202, r.text
    assert _read(collector, public, {"link": link}, verify).status_code == 403  # a public key reads nothing
    wanted = {"link": link, "synthetic": "true", "type": "page"}
    deadline = time.monotonic() + 90
    while not (found := _read(collector, private, wanted, verify).json()["data"]) and time.monotonic() < deadline:
        time.sleep(1)
    assert found and found[0]["link"] == link and found[0]["synthetic"] is True
    after = charts()
    assert set(after) == set(before)
    counted = [name for name in after if after[name] != before[name]]
    assert counted == [], f"a probe was counted in the stats: {counted}"
    assert not any(after[name] for name in ("views_per_day", "top_links")), "a probe was counted in the stats"
