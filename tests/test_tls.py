"""TLS and authentication on the links between hosts (issue 17), run against an inventory.

From the control node, at each component's address: Kafka's client port takes SASL_SSL only
(plaintext, a wrong password, an unknown SCRAM user refused), the ACLs hold (the consumer's
principal cannot write the events topic nor delete or create topics, the collector's cannot
read); PostgreSQL takes the app's roles over TLS only (a plain connection refused, verify-full
works); a trust anchor from another CA makes every client refuse the server; TLS 1.0/1.1 are
refused and 1.2 accepted. On the host: private keys and files with secrets readable by their
service's user (or root) only; the services' logs hold none of the deploy's secrets. site.yml
run again with -vvv prints none of them either: that check rides on test_ports.py's converge
(one converge instead of two).

Each check is skipped when its component's TLS switch (kafka_tls_enabled,
postgresql_tls_enabled) is off in the inventory.
"""

from __future__ import annotations

import datetime
import socket
import ssl
import struct
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]
from conftest import Secret, create_topic, enabled, kafka_client, pg_tls, secret, setting

REPO = Path(__file__).resolve().parent.parent
Component = Callable[[str], tuple[str, dict[str, Any]]]
testinfra_hosts = ["ansible://footprint"]


# --- helpers ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def kafka(component: Component) -> dict[str, Any]:
    addr, hv = component("kafka")
    if not enabled(hv, "kafka_tls_enabled"):
        pytest.skip("kafka_tls_enabled is false in this inventory")
    _, app = component("app")
    return {
        "vars": hv,
        "address": addr,
        "port": int(setting(hv, "kafka_port")),
        "bootstrap": f"{addr}:{int(setting(hv, 'kafka_port'))}",
        "topic": next(t["name"] for t in setting(hv, "kafka_topics") if not t["name"].endswith(".dlq")),
        "collector": (setting(app, "footprint_kafka_collector_user"), secret(app, "footprint_kafka_collector_password")),
        "consumer": (setting(app, "footprint_kafka_consumer_user"), secret(app, "footprint_kafka_consumer_password")),
    }


@pytest.fixture(scope="module")
def pg(component: Component) -> dict[str, Any]:
    addr, hv = component("postgresql")
    if not enabled(hv, "postgresql_tls_enabled"):
        pytest.skip("postgresql_tls_enabled is false in this inventory")
    return {
        "vars": hv,
        "address": addr,
        "port": int(setting(hv, "postgresql_port")),
        "params": {
            "host": addr, "port": int(setting(hv, "postgresql_port")), "dbname": setting(hv, "postgresql_database"),
            "user": setting(hv, "postgresql_reader_user"),
        },
        "password": secret(hv, "postgresql_reader_password"),
    }


def kafka_as(kafka: dict[str, Any], who: str, **extra: Any) -> dict[str, Any]:
    user, password = kafka[who]
    return kafka_client(kafka["vars"], kafka["bootstrap"], user, password, **extra)


def auth_errors(
    config: dict[str, Any], seconds: float = 15, told: Callable[[list[KafkaError]], bool] = bool
) -> tuple[list[KafkaError], bool]:
    """(errors reported by the client, whether metadata was returned) of metadata requests, asked
    again every second until the broker answers, `told(errors)` (default: any error) says the client
    knows why it got nothing, or `seconds` pass. (A client that is refused is told within a second or
    two; waiting out the whole time for each refusal cost 15 s a check.)"""
    errors: list[KafkaError] = []
    admin = AdminClient(config | {"error_cb": errors.append, "socket.timeout.ms": 5000,
                                  "reconnect.backoff.ms": 1000, "reconnect.backoff.max.ms": 2000})
    deadline = time.monotonic() + seconds
    while True:
        try:
            admin.list_topics(timeout=1)
            return errors, True
        except KafkaException:
            pass
        admin.poll(0.2)  # serves the error callbacks
        if told(errors) or time.monotonic() >= deadline:
            return errors, False


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The certificate of a CA that signed nothing of the deploy."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Footprint private CA")])  # same name, other key
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )
    path = tmp_path_factory.mktemp("other-ca") / "ca.crt"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def tls_handshake(address: str, port: int, version: ssl.TLSVersion, starttls_pg: bool = False) -> str:
    """'ok' if a handshake offering only `version` succeeds, else the error (server alerts included)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")  # let this client offer the old versions at all
    ctx.minimum_version = version
    ctx.maximum_version = version
    with socket.create_connection((address, port), timeout=10) as sock:
        if starttls_pg:  # PostgreSQL's SSLRequest, answered by 'S' before the handshake
            sock.sendall(struct.pack("!II", 8, 80877103))
            assert sock.recv(1) == b"S", "the server does not offer TLS"
        try:
            with ctx.wrap_socket(sock, server_hostname=address):
                return "ok"
        except (ssl.SSLError, ConnectionResetError) as exc:
            return f"{type(exc).__name__}: {exc}"


def refused_by_server(result: str) -> bool:
    """A handshake that failed at the server (an alert, a reset), not one this client could not offer."""
    return result != "ok" and "NO_PROTOCOLS_AVAILABLE" not in result and "NO_CIPHERS_AVAILABLE" not in result


# --- Kafka ----------------------------------------------------------------------------------------


def test_kafka_plaintext_client_is_refused(kafka: dict[str, Any]) -> None:
    _errors, answered = auth_errors({"bootstrap.servers": kafka["bootstrap"]}, seconds=10)
    assert not answered, "a PLAINTEXT client got metadata from the SASL_SSL listener"


@pytest.mark.parametrize("case", ["wrong-password", "unknown-user"])
def test_kafka_bad_credentials_are_refused(kafka: dict[str, Any], case: str) -> None:
    user = kafka["collector"][0] if case == "wrong-password" else f"nobody-{uuid.uuid4().hex[:8]}"
    config = kafka_client(kafka["vars"], kafka["bootstrap"], user, Secret(uuid.uuid4().hex))
    errors, answered = auth_errors(config, told=lambda errs: any(e.code() == KafkaError._AUTHENTICATION for e in errs))
    assert not answered, f"{case}: the broker answered"
    assert any(e.code() == KafkaError._AUTHENTICATION for e in errors), [e.str() for e in errors]


def test_kafka_admin_and_app_principals_log_in(kafka: dict[str, Any]) -> None:
    for config in (kafka_client(kafka["vars"], kafka["bootstrap"]), kafka_as(kafka, "collector"), kafka_as(kafka, "consumer")):
        errors, answered = auth_errors(config, told=lambda _errors: False)  # a passing error must not end it
        assert answered, [e.str() for e in errors]


@pytest.fixture()
def scratch_topic(kafka: dict[str, Any]) -> Iterator[str]:
    admin = AdminClient(kafka_client(kafka["vars"], kafka["bootstrap"]))
    name = f"footprint-tls-{uuid.uuid4().hex[:10]}"
    create_topic(admin, name)
    yield name
    admin.delete_topics([name])[name].result(30)


def in_metadata(admin: AdminClient, topic: str, timeout: float = 15) -> bool:
    """Whether the topic shows in the metadata within `timeout` s: with several brokers, the one a
    request lands on may learn of a new topic a moment after the controller created it."""
    deadline = time.monotonic() + timeout
    while topic not in admin.list_topics(timeout=15).topics:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)
    return True


def produce_error(config: dict[str, Any], topic: str) -> KafkaError | None:
    outcome: list[KafkaError | None] = []
    producer = Producer(config | {"message.timeout.ms": 10000, "acks": "all"})
    producer.produce(topic, value=b"tls-check", on_delivery=lambda err, _msg: outcome.append(err))
    producer.flush(20)
    assert outcome, "no delivery report within 20 s"
    return outcome[0]


def test_consumer_cannot_write_the_events_topic(kafka: dict[str, Any]) -> None:
    err = produce_error(kafka_as(kafka, "consumer"), kafka["topic"])
    assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, err


def test_consumer_cannot_delete_or_create_topics(kafka: dict[str, Any], scratch_topic: str) -> None:
    admin = AdminClient(kafka_as(kafka, "consumer"))
    with pytest.raises(KafkaException) as deleted:
        admin.delete_topics([scratch_topic], operation_timeout=10)[scratch_topic].result(30)
    assert deleted.value.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    name = f"footprint-tls-new-{uuid.uuid4().hex[:8]}"
    with pytest.raises(KafkaException) as created:
        admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)])[name].result(30)
    assert created.value.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    # the scratch topic is still there (the admin deletes it)
    assert in_metadata(AdminClient(kafka_client(kafka["vars"], kafka["bootstrap"])), scratch_topic)


def test_collector_cannot_read(kafka: dict[str, Any]) -> None:
    consumer = Consumer(kafka_as(kafka, "collector", **{"group.id": f"footprint-tls-{uuid.uuid4().hex[:8]}",
                                                         "enable.auto.commit": False}))
    try:
        consumer.assign([TopicPartition(kafka["topic"], 0, 0)])
        errors = []
        for _ in range(30):  # a refused group (no ACL either) may show first: keep fetching
            msg = consumer.poll(1.0)
            err = msg.error() if msg is not None else None
            if err is not None:
                errors.append(err.code())
                if err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED:
                    break
                continue
            assert msg is None, "the collector's principal read a record of the events topic"
        assert KafkaError.TOPIC_AUTHORIZATION_FAILED in errors, errors
    finally:
        consumer.close()


def test_kafka_client_rejects_a_server_from_another_ca(kafka: dict[str, Any], other_ca: Path) -> None:
    config = kafka_client(kafka["vars"], kafka["bootstrap"]) | {"ssl.ca.location": str(other_ca)}
    errors, answered = auth_errors(config, seconds=10)
    assert not answered, "the client trusted a broker whose certificate another CA signed"
    assert any(e.code() in (KafkaError._SSL, KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN) for e in errors), \
        [e.str() for e in errors]


# --- PostgreSQL -----------------------------------------------------------------------------------


def test_postgresql_plain_tcp_is_refused(pg: dict[str, Any]) -> None:
    with pytest.raises(psycopg.OperationalError) as refused:
        psycopg.connect(**pg["params"], password=pg["password"].reveal(), sslmode="disable", connect_timeout=10)
    assert "no encryption" in str(refused.value) or "pg_hba.conf" in str(refused.value)


def test_postgresql_verify_full_works(pg: dict[str, Any]) -> None:
    with psycopg.connect(**pg["params"], password=pg["password"].reveal(), connect_timeout=10, **pg_tls(pg["vars"])) as conn:
        row = conn.execute("SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()
    assert row is not None and row[0] is True and row[1] in ("TLSv1.2", "TLSv1.3"), row


def test_postgresql_client_rejects_a_server_from_another_ca(pg: dict[str, Any], other_ca: Path) -> None:
    with pytest.raises(psycopg.OperationalError) as rejected:
        psycopg.connect(**pg["params"], password=pg["password"].reveal(), connect_timeout=10,
                        sslmode="verify-full", sslrootcert=str(other_ca))
    # the other CA has the same name as the deploy's: OpenSSL reports the signature failure itself
    text = str(rejected.value)
    assert "certificate verify failed" in text or "bad signature" in text, text[:300]


# --- on the hosts: keys and logs ------------------------------------------------------------------


def test_private_keys_are_readable_by_their_service_only(host: Any, hostvars: dict[str, Any]) -> None:
    groups = setting(hostvars, "group_names")
    expected: list[tuple[str, str]] = []  # (path, owner); mode 0600 each
    if "kafka" in groups and enabled(hostvars, "kafka_tls_enabled"):
        conf = setting(hostvars, "kafka_config_dir")
        expected += [(f"{conf}/tls/keystore.p12", setting(hostvars, "kafka_user")), (f"{conf}/admin.properties", "root")]
    if "postgresql" in groups and enabled(hostvars, "postgresql_tls_enabled"):
        found = host.run("ls /etc/postgresql/*/*/tls/server.key").stdout.split()
        assert found, "no server.key of PostgreSQL"
        expected += [(path, "postgres") for path in found]
    if not expected:
        pytest.skip("no TLS component on this host")
    for path, owner in expected:
        f = host.file(path)
        assert f.exists and f.user == owner and f.mode == 0o600, f"{path}: {f.user} {oct(f.mode)}"
    # no private key anywhere else in the places the roles write to
    stray = host.run("grep -rlE 'PRIVATE KEY-----' /etc/ssl/footprint /etc/footprint /etc/kafka 2>/dev/null").stdout.split()
    assert stray == [], stray


def deploy_secrets(secrets_dir: Path) -> list[Secret]:
    """Every generated secret of the deploy (one file each), and the bodies of the private keys."""
    found = [Secret(f.read_text().strip()) for f in secrets_dir.iterdir() if f.is_file() and not f.name.endswith(".p12")]
    pki = secrets_dir / "pki"
    if pki.is_dir():
        for key in pki.glob("*.key"):
            found += [Secret(line) for line in key.read_text().splitlines() if len(line) >= 40 and "-----" not in line]
    return [s for s in found if len(s.reveal()) >= 12]


def test_service_logs_hold_no_secret(host: Any, secrets_dir: Path) -> None:
    secrets = deploy_secrets(secrets_dir)
    assert secrets, f"no secret found in {secrets_dir}"
    logs = host.run(
        "journalctl -b --no-pager -o cat 2>/dev/null; "
        "cat /var/log/kafka/*.log /var/log/postgresql/*.log 2>/dev/null"
    ).stdout
    assert len(logs) > 1000, "no service logs read"
    leaked = sum(1 for s in secrets if s.found_in(logs))
    assert leaked == 0, f"{leaked} secret(s) of the deploy appear in the services' logs"


# --- HTTPS in front of the collector and the dashboard (nginx) -------------------------------------


@pytest.fixture(scope="module")
def web(component: Component) -> dict[str, Any]:
    addr, hv = component("app")
    if not enabled(hv, "footprint_tls_enabled"):
        pytest.skip("footprint_tls_enabled is false in this inventory")
    port = int(setting(hv, "footprint_collector_port"))
    return {"vars": hv, "address": addr, "port": port, "url": f"https://{addr}:{port}",
            "ca": str(setting(hv, "footprint_tls_ca_cert")), "http_port": int(setting(hv, "footprint_proxy_http_port"))}


def test_collector_https_works_with_the_ca(web: dict[str, Any]) -> None:
    import httpx

    r = httpx.get(f"{web['url']}/healthz", verify=web["ca"], timeout=10)
    assert r.status_code == 200 and r.json()["status"] == "ok"
    assert r.headers["strict-transport-security"] == "max-age=31536000"  # HSTS on every HTTPS front


def test_collector_plain_http_is_redirected_or_refused(web: dict[str, Any]) -> None:
    import httpx

    # plain HTTP to the HTTPS port: nginx answers 400, never the app
    r = httpx.get(f"http://{web['address']}:{web['port']}/healthz", timeout=10)
    assert r.status_code == 400, r.status_code
    if web["http_port"]:
        r = httpx.post(f"http://{web['address']}:{web['http_port']}/v1/events", json={}, timeout=10)
        assert r.status_code == 308 and r.headers["location"] == f"https://{web['address']}:{web['port']}/v1/events"


def test_collector_client_rejects_a_server_from_another_ca(web: dict[str, Any], other_ca: Path) -> None:
    import httpx

    with pytest.raises(httpx.ConnectError) as rejected:
        httpx.get(f"{web['url']}/healthz", verify=str(other_ca), timeout=10)
    assert "CERTIFICATE_VERIFY_FAILED" in str(rejected.value)


def test_collector_body_limit(web: dict[str, Any]) -> None:
    import httpx

    body = b"x" * (4 * 1024 * 1024)
    r = httpx.post(f"{web['url']}/v1/events", content=body, verify=web["ca"], timeout=30,
                   headers={"Content-Type": "application/json"})
    assert r.status_code == 413


def test_app_listens_on_loopback_behind_nginx(host: Any, hostvars: dict[str, Any]) -> None:
    if "app" not in setting(hostvars, "group_names") or not enabled(hostvars, "footprint_tls_enabled"):
        pytest.skip("no HTTPS proxy on this host")
    backend = int(setting(hostvars, "footprint_collector_backend_port"))
    assert host.socket(f"tcp://127.0.0.1:{backend}").is_listening
    assert not host.socket(f"tcp://0.0.0.0:{backend}").is_listening
    key = host.file("/etc/nginx/tls/footprint.key")
    assert key.user == "root" and key.mode == 0o600


# --- every TLS listener: TLS 1.0 and 1.1 refused, 1.2 accepted ---------------------------------------


@pytest.mark.parametrize("listener", ["kafka", "pg", "web"])
@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1], ids=["tls1.0", "tls1.1"])
def test_old_tls_is_refused(request: pytest.FixtureRequest, listener: str, version: ssl.TLSVersion) -> None:
    endpoint = request.getfixturevalue(listener)  # skips when that component's TLS is off
    starttls = listener == "pg"
    assert tls_handshake(endpoint["address"], endpoint["port"], ssl.TLSVersion.TLSv1_2, starttls_pg=starttls) == "ok"
    result = tls_handshake(endpoint["address"], endpoint["port"], version, starttls_pg=starttls)
    assert refused_by_server(result), result
