"""Kafka's metrics through the JMX exporter agent (roles/kafka, README "Metrics"), without a test host.

The role's own agent configuration (templates/jmx-exporter.yml.j2, rendered as for a broker-and-
controller node with TLS) in a real Kafka 4.0 broker (the assembled distribution, on loopback),
with the agent jar the role pins (Maven Central, checked against kafka_jmx_exporter_checksum):
- HTTPS from a PKCS#12 keystore made like the role's (host key, certificate and CA; the friendly
  name is the inventory name, here in mixed case: the agent must find it lower-cased), verified
  against the CA; nothing in clear on the port;
- every metric the README lists is served, with real values (the quorum's leader, nothing
  under-replicated, the messages produced counted on their topic, the topic's size on disk);
  nothing else of Kafka's (no catch-all rule);
- the README's lists and the rules name the same metrics.
Cost: one broker start (~15-25 s). The role's tasks (download, unit, restarts, the gate) run on the
test hosts (molecule).
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import json
import re
import socket
import ssl
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jinja2
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

ROOT = Path(__file__).resolve().parents[2]
ROLE = ROOT / "roles" / "kafka"
sys.path.insert(0, str(ROOT / "testbed" / "kafka-dist"))

from kafka_local import LocalKafka, cache_dir  # noqa: E402

HOST = "fp-Metrics-Test"  # an inventory name with capitals: Java lists PKCS#12 aliases in lower case
PASSWORD = "keystore-pass-0123456789"
MESSAGES = 25
TOPIC = "metrics-test-topic"


def defaults() -> dict[str, Any]:
    """The role's defaults, with the agent's URL resolved for its version."""
    d: dict[str, Any] = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    d["kafka_jmx_exporter_url"] = jinja2.Template(d["kafka_jmx_exporter_url"]).render(**d)
    return d


def agent_jar() -> Path:
    """The jar the role pins, cached beside the Kafka distribution, verified against its checksum."""
    d = defaults()
    jar = cache_dir() / "artifacts" / f"jmx_prometheus_javaagent-{d['kafka_jmx_exporter_version']}.jar"
    if not jar.is_file():
        jar.parent.mkdir(parents=True, exist_ok=True)
        tmp = jar.with_suffix(".part")
        with urllib.request.urlopen(d["kafka_jmx_exporter_url"], timeout=60) as resp:
            tmp.write_bytes(resp.read())
        tmp.rename(jar)
    digest = hashlib.sha256(jar.read_bytes()).hexdigest()
    pinned = d["kafka_jmx_exporter_checksum"]
    assert digest == pinned, f"{jar}: SHA-256 {digest}, the role pins {pinned}"
    return jar


def free_ports(n: int) -> list[int]:
    """n free TCP ports on loopback, the first two consecutive (LocalKafka: client, controller = +1)."""
    for base in range(29100, 29900, 10):
        ports = [base, base + 1, *range(base + 2, base + n)]
        if all(_free(p) for p in ports):
            return ports
    raise RuntimeError("no free ports on loopback")


def _free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def make_pki(directory: Path) -> tuple[Path, Path]:
    """A CA and a host certificate for 127.0.0.1, as a PKCS#12 keystore (key, certificate, CA) like
    the role's (tasks/tls.yml); returns (keystore, CA certificate)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "metrics test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOST)]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    keystore = directory / "keystore.p12"
    keystore.write_bytes(pkcs12.serialize_key_and_certificates(
        HOST.encode(), key, cert, [ca], serialization.BestAvailableEncryption(PASSWORD.encode())))
    ca_file = directory / "ca.crt"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    return keystore, ca_file


def render_config(keystore: Path) -> str:
    """templates/jmx-exporter.yml.j2 as the role renders it for a broker-and-controller node with TLS."""
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    env.filters["bool"] = bool
    env.filters["to_json"] = json.dumps
    return env.from_string((ROLE / "templates" / "jmx-exporter.yml.j2").read_text()).render(
        ansible_managed="rendered by " + Path(__file__).name, kafka_jmx_exporter_version=defaults()["kafka_jmx_exporter_version"],
        kafka_tls_enabled=True, __kafka_keystore=str(keystore), kafka_keystore_password=PASSWORD,
        inventory_hostname=HOST, __kafka_is_controller=True)


def readme_metrics() -> set[str]:
    """The kafka_* metric names the role README's "Metrics" section lists."""
    text = (ROLE / "README.md").read_text()
    section = text.split("## Metrics", 1)[1].split("\n## ", 1)[0]
    first_cells = [line.split("|")[1] for line in section.splitlines() if line.startswith("| `kafka_")]
    return {name for cell in first_cells for name in re.findall(r"`(kafka_[a-z_]+)", cell)}


def rule_metrics(config: dict[str, Any]) -> set[str]:
    """The names the rules export (a counter's with the _total its exposition adds)."""
    return {r["name"] + ("_total" if r.get("type") == "COUNTER" else "") for r in config["rules"]}


class AgentKafka(LocalKafka):
    """LocalKafka whose broker JVM (not the storage tool's: that one runs with a 128m heap) loads the agent."""

    def __init__(self, *args: Any, agent_opt: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.agent_opt = agent_opt

    def _env(self, heap: str | None = None) -> dict[str, str]:
        env = super()._env(heap)
        if heap == self.heap:
            env["KAFKA_OPTS"] = self.agent_opt
        return env


def parse(body: str) -> dict[str, dict[str, float]]:
    """Prometheus text format: name -> {labels text: value}."""
    out: dict[str, dict[str, float]] = {}
    for line in body.splitlines():
        if line and not line.startswith("#"):
            m = re.match(r"^([a-zA-Z_:][\w:]*)(\{[^}]*\})? (\S+)", line)
            assert m, line
            out.setdefault(m.group(1), {})[m.group(2) or ""] = float(m.group(3))
    return out


@pytest.fixture(scope="module")
def scraped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, dict[str, float]], str, int]]:
    """The broker with the agent, after MESSAGES produced to TOPIC and read back: (metrics, body, port)."""
    from confluent_kafka import Consumer, Producer

    tmp = tmp_path_factory.mktemp("kafka-metrics")
    keystore, ca_file = make_pki(tmp)
    config = tmp / "jmx-exporter.yml"
    config.write_text(render_config(keystore))
    port, _, metrics_port = free_ports(3)
    kafka = AgentKafka(tmp / "kafka", port=port, agent_opt=f"-javaagent:{agent_jar()}=127.0.0.1:{metrics_port}:{config}")
    with kafka:
        kafka.create_topic(TOPIC)
        producer = Producer({"bootstrap.servers": kafka.bootstrap})
        for i in range(MESSAGES):
            producer.produce(TOPIC, value=f"event {i}".encode())
        assert producer.flush(30) == 0
        consumer = Consumer({"bootstrap.servers": kafka.bootstrap, "group.id": "metrics-test", "auto.offset.reset": "earliest"})
        consumer.subscribe([TOPIC])
        got = 0
        for _ in range(60):
            got += len([m for m in consumer.consume(MESSAGES, timeout=1) if not m.error()])
            if got >= MESSAGES:
                break
        consumer.close()
        assert got == MESSAGES
        ctx = ssl.create_default_context(cafile=str(ca_file))
        with urllib.request.urlopen(f"https://127.0.0.1:{metrics_port}/metrics", context=ctx, timeout=30) as resp:
            body = resp.read().decode()
        yield parse(body), body, metrics_port


def test_the_readme_lists_what_the_rules_export() -> None:
    config = yaml.safe_load(render_config(Path("/keystore.p12")))
    assert readme_metrics() == rule_metrics(config)
    names = [r["name"] for r in config["rules"]]
    assert len(names) == len(set(names))
    assert all(r.get("pattern", "").startswith("^") for r in config["rules"]), "every pattern anchored"


def test_every_listed_metric_is_served_over_https(scraped: tuple[dict[str, dict[str, float]], str, int]) -> None:
    metrics, _, _ = scraped
    missing = sorted(readme_metrics() - set(metrics))
    assert not missing, f"listed in the README, not served: {missing}"
    # no catch-all: Kafka's metrics are exactly the listed ones
    assert {m for m in metrics if m.startswith("kafka_")} == readme_metrics()
    for jvm in ("jvm_memory_used_bytes", "jvm_gc_collection_seconds_count", "process_resident_memory_bytes", "jmx_scrape_error"):
        assert jvm in metrics, jvm
    assert metrics["jmx_scrape_error"][""] == 0


def test_the_values_are_the_brokers(scraped: tuple[dict[str, dict[str, float]], str, int]) -> None:
    metrics, _, _ = scraped
    one = {name: values[""] for name, values in metrics.items() if "" in values}  # the unlabelled ones
    assert one["kafka_raft_current_leader"] == 1  # LocalKafka's node.id
    assert metrics["kafka_raft_current_state"] == {'{state="leader"}': 1}
    assert one["kafka_controller_active"] == 1
    assert one["kafka_controller_offline_partitions"] == 0
    assert one["kafka_server_under_replicated_partitions"] == 0
    assert one["kafka_server_under_min_isr_partitions"] == 0
    assert one["kafka_server_broker_state"] == 3  # running
    assert one["kafka_raft_voters"] == 1
    assert one["kafka_raft_high_watermark"] >= one["kafka_metadata_last_applied_offset"] > 0
    assert 0 <= one["kafka_metadata_apply_lag_seconds"] < 30
    assert metrics["kafka_server_topic_messages_in_total"][f'{{topic="{TOPIC}"}}'] == MESSAGES
    assert metrics["kafka_server_topic_bytes_in_total"][f'{{topic="{TOPIC}"}}'] > 0
    assert metrics["kafka_server_topic_bytes_out_total"][f'{{topic="{TOPIC}"}}'] > 0
    assert metrics["kafka_log_size_bytes"][f'{{partition="0",topic="{TOPIC}"}}'] > 0
    # both request handler pools of a broker-and-controller node, halved: a share again
    assert 0 <= one["kafka_server_request_handler_idle_ratio"] <= 1.05


def test_nothing_in_clear_on_the_metrics_port(scraped: tuple[dict[str, dict[str, float]], str, int]) -> None:
    _, _, metrics_port = scraped
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).read()
