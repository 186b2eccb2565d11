"""A failing smoke check never prints a secret.

Runs deliberately failing smoke-style tests in a pytest subprocess, with this suite's conftest
(its `Secret` type and its output settings), in the ways a real check fails: an assertion on
a fixture that holds secrets, a client call that raises with the password among its arguments,
an HTTP request with the API key in a header to a closed port, and a failing fixture. Then it
asserts that the secret's text appears nowhere in the output, also when the run asks for long
tracebacks with locals (-l --tb=long --full-trace).
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent

FAILING = '''
import os
import httpx
import pytest
from conftest import Secret

SECRET = Secret(os.environ["PROBE_SECRET"])


@pytest.fixture
def endpoints():
    return {"collector": "http://127.0.0.1:9", "api_key": SECRET, "pg": {"user": "u", "password": SECRET}}


@pytest.fixture
def broken(endpoints):
    raise RuntimeError(f"cannot reach the store with {endpoints}")


def connect(host, user, password):
    raise ConnectionRefusedError("connection refused")


def test_assertion_on_the_fixture(endpoints):
    assert endpoints == {"collector": "elsewhere"}


def test_assertion_on_a_revealed_comparison(endpoints):
    leaked = endpoints["api_key"].found_in("some text")
    assert leaked, endpoints


def test_client_call_with_the_password(endpoints):
    password = endpoints["pg"]["password"].reveal()
    connect("127.0.0.1", "u", password)


def test_http_request_with_the_api_key(endpoints):
    headers = {"Authorization": "Bearer " + endpoints["api_key"].reveal()}
    response = httpx.post(endpoints["collector"] + "/v1/events", headers=headers, json={}, timeout=2)
    assert response.status_code == 202, response.request.headers


def test_failing_fixture(broken):
    pass
'''


@pytest.mark.parametrize("options", [[], ["-l", "--tb=long", "--full-trace", "-vv"]], ids=["default", "hostile"])
def test_a_failing_check_never_prints_the_secret(tmp_path: Path, options: list[str]) -> None:
    secret = f"s3cr3t-{uuid.uuid4().hex}"
    (tmp_path / "test_failing.py").write_text(FAILING)
    env = dict(os.environ, PROBE_SECRET=secret, PYTHONPATH=str(TESTS))
    res = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "conftest", "-p", "no:cacheprovider", "--rootdir", str(tmp_path),
         *options, str(tmp_path / "test_failing.py")],
        cwd=tmp_path, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120,
    )
    out = res.stdout
    # the run really failed in each of the ways, and the output was produced
    assert "5 failed" in out or ("4 failed" in out and "1 error" in out), out[-3000:]
    assert "ConnectionRefusedError" in out and "ConnectError" in out and "RuntimeError" in out
    assert "Secret('***')" in out  # the fixture's secrets were shown, hidden
    assert secret not in out, "the secret's text appears in the output of a failing run"
    assert secret[7:] not in out
