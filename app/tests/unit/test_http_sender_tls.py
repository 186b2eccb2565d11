"""HttpSender over HTTPS with a private CA, as the kit deploys the collector (issue 28, item 5): with
the CA it delivers; without, it drops the batch with a warning that names the cause and the fix,
never silently. A real TLS server on loopback with a certificate made for the test."""

from __future__ import annotations

import json
import logging
import ssl
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from footprint.track import HttpSender


@pytest.fixture
def https_collector(tmp_path: Path) -> Iterator[dict[str, Any]]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    received: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.extend(json.loads(body)["batch"])
            self.send_response(202)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield {"url": f"https://127.0.0.1:{server.server_port}", "ca": str(cert), "received": received}
    finally:
        server.shutdown()


def _page(n: int) -> dict[str, Any]:
    return {"type": "page", "properties": {"path": f"/p{n}"}, "messageId": f"m-{n}"}


def test_with_the_ca_file_page_events_are_delivered(https_collector: dict[str, Any]) -> None:
    sender = HttpSender(https_collector["url"], key="k", flush_seconds=0.1, ca_file=https_collector["ca"])
    for n in range(3):
        sender.send(_page(n))
    sender.close(10)
    assert (sender.sent, sender.dropped) == (3, 0)
    assert [e["messageId"] for e in https_collector["received"]] == ["m-0", "m-1", "m-2"]


def test_without_trust_the_drop_is_a_warning_naming_the_fix(
    https_collector: dict[str, Any], caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(HttpSender, "_post_tries", 2)
    caplog.set_level(logging.WARNING, logger="footprint.track")
    sender = HttpSender(https_collector["url"], key="k", flush_seconds=0.1)
    sender.send(_page(1))
    sender.close(30)
    assert sender.dropped == 1 and https_collector["received"] == []
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("not trusted" in w and "ca_file" in w for w in warnings), warnings
    assert any("dropped" in w for w in warnings), warnings
