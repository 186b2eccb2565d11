"""Certificates renewed while events keep coming (playbooks/rotate-certs.yml).

- `destructive`, and on demand since stop 55 (`cert_renewal`: FOOTPRINT_CERT_RENEWAL=1 make
  molecule-cluster, or `make test-day2`; ~4 min, out of `make test` for CI's time), on an
  inventory with two app hosts or more (the cluster scenario: three Kafka nodes, two ClickHouse
  hosts, two app hosts): every host certificate re-issued by `rotate-certs.yml` while both
  collectors take events. Afterwards every service presents its new certificate (a new serial, a
  later expiry, verified against the deploy's CA): each Kafka node, PostgreSQL, each collector's
  nginx (and ClickHouse where it serves TLS); the certificate metric
  (footprint_certificate_expiry_timestamp_seconds) reports the new expiry; every accepted event
  is in PostgreSQL and ClickHouse exactly once; no collector refused events for longer than
  REFUSED_MAX_S in a row (the app hosts restart one at a time). With one app host it is skipped
  (named): the docker scenario has nothing to roll.

The three steps of replacing the CA are checked on the control node's files and the hosts' copies
by testbed/tests/test_pki_rotation.py in `make test`, and under traffic on the cluster on demand
(`ca_rotation`: FOOTPRINT_CA_ROTATION=1 make molecule-cluster; three more passes of rotate-certs.yml,
~3 min each, most of it Kafka's three restarts: CI's time).
"""

from __future__ import annotations

import socket
import ssl
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import upgrade_traffic
from conftest import address_of, resolved, setting
from cryptography import x509
from test_delivery import endpoints_of
from test_kafka_cluster import CollectorTraffic
from test_ports import converge

testinfra_hosts = ["ansible://app"]

Component = Callable[[str], tuple[str, dict[str, Any]]]
REFUSED_MAX_S = 30.0  # the longest run of refused batches one collector may show: one host's restart


def presented(address: str, port: int, cafile: str, starttls_pg: bool = False) -> x509.Certificate:
    """The certificate a TLS listener presents, verified against `cafile` (names included)."""
    ctx = ssl.create_default_context(cafile=cafile)
    with socket.create_connection((address, port), timeout=10) as sock:
        if starttls_pg:  # PostgreSQL's SSLRequest, answered by 'S' before the handshake
            sock.sendall(struct.pack("!II", 8, 80877103))
            assert sock.recv(1) == b"S", f"{address}:{port} does not offer TLS"
        with ctx.wrap_socket(sock, server_hostname=address) as tls:
            der = tls.getpeercert(binary_form=True)
    assert der, f"{address}:{port} presented no certificate"
    return x509.load_der_x509_certificate(der)


# each TLS listener that presents a host certificate: the group, its switch, its port variable,
# whether it speaks PostgreSQL's STARTTLS, and the name it is reported by
LISTENERS = (
    ("kafka", "kafka_tls_enabled", "kafka_port", False, "kafka"),
    ("clickhouse", "clickhouse_tls_enabled", "clickhouse_http_port", False, "clickhouse"),
    ("postgresql", "postgresql_tls_enabled", "postgresql_port", True, "postgresql"),
    ("app", "footprint_tls_enabled", "footprint_collector_port", False, "collector"),
)


def listeners(config: pytest.Config, groups: dict[str, list[str]]) -> dict[str, tuple[str, int, bool]]:
    """Every TLS listener of the deploy that presents a host certificate: name -> (address, port,
    PostgreSQL's STARTTLS)."""
    found: dict[str, tuple[str, int, bool]] = {}
    for group, switch, port, starttls_pg, label in LISTENERS:
        for h in groups.get(group, []):
            hv = resolved(config, h)
            if setting(hv, switch):
                found[f"{label} {h}"] = (address_of(hv), int(setting(hv, port)), starttls_pg)
    return found


def certificates(where: dict[str, tuple[str, int, bool]], cafile: str) -> dict[str, x509.Certificate]:
    return {name: presented(addr, port, cafile, pg) for name, (addr, port, pg) in where.items()}


def longest_refusal(logs: list[Path]) -> float:
    """The longest run of refused requests of any one collector's log, in seconds."""
    windows = [end - start for log in logs for start, end in upgrade_traffic.refused_windows(upgrade_traffic.read_log(log))]
    return max(windows, default=0.0)


def app_hosts_to_roll(host: Any, groups: dict[str, list[str]]) -> list[str]:
    """The app hosts, when there are two or more and `host` is the first (the test runs once for
    the deploy); the test skipped otherwise."""
    apps = list(groups.get("app", []))
    if len(apps) < 2:
        pytest.skip("one app host: nothing to roll (the cluster scenario has two)")
    if host.backend.get_hostname() != apps[0]:
        pytest.skip("runs once for the deploy (from the first app host's parameter)")
    return apps


@pytest.mark.destructive
@pytest.mark.cert_renewal  # ~4 min beside the docker scenario: FOOTPRINT_CERT_RENEWAL=1 make molecule-cluster
def test_host_certificates_are_renewed_one_host_at_a_time_under_traffic(
    host: Any, hostvars: dict[str, Any], component: Component, request: pytest.FixtureRequest, tmp_path: Path,
) -> None:
    groups = hostvars["groups"]
    apps = app_hosts_to_roll(host, groups)
    cafile = str(setting(hostvars, "footprint_tls_ca_cert"))
    where = listeners(request.config, groups)
    assert where, "no TLS listener in the inventory"
    before = certificates(where, cafile)
    traffic = CollectorTraffic([endpoints_of(component, resolved(request.config, h)) for h in apps], tmp_path)
    traffic.start()
    try:
        time.sleep(5)
        res, took = converge(request.config.option.ansible_inventory, playbook="rotate-certs.yml")
        assert res.returncode == 0, res.stdout[-6000:]
        time.sleep(5)
    finally:
        traffic.done.set()
    delivered = traffic.stop_and_check()
    after = certificates(where, cafile)
    for name, cert in after.items():
        old = before[name]
        assert cert.serial_number != old.serial_number, f"{name} still presents its old certificate"
        assert cert.not_valid_after_utc > old.not_valid_after_utc, f"{name}: the new certificate expires no later"
    refused = longest_refusal(traffic.logs)
    # the metric the FootprintCertificateExpiring alert reads, written again by its timer's service
    expiry = next(c for n, c in after.items() if n == f"collector {apps[0]}").not_valid_after_utc
    assert host.run("systemctl start footprint-cert-metrics.service").rc == 0
    textfile = host.file(f"{setting(hostvars, 'monitoring_textfile_dir')}/footprint_certificates.prom").content_string
    metric = next(line for line in textfile.splitlines() if "host.crt" in line and not line.startswith("#"))
    assert int(float(metric.split()[-1])) == int(expiry.timestamp()), (metric, expiry)
    print(f"\nrotate-certs.yml {took:.0f} s: {len(after)} listeners present new certificates "
          f"(expiring {min(c.not_valid_after_utc for c in after.values()):%Y-%m-%d %H:%M} UTC or later); {delivered}; "
          f"longest run of refused batches at one collector {refused:.1f} s")
    assert refused <= REFUSED_MAX_S, f"a collector refused events for {refused:.1f} s in a row"


def pem_count(text: str) -> int:
    return text.count("-----BEGIN CERTIFICATE-----")


def verifies(address: str, port: int, cafile: str, starttls_pg: bool) -> bool:
    """Whether the listener's certificate verifies against `cafile` alone."""
    try:
        presented(address, port, cafile, starttls_pg)
    except ssl.SSLCertVerificationError:
        return False
    return True


@pytest.mark.destructive
@pytest.mark.ca_rotation  # ~10 min (three passes): FOOTPRINT_CA_ROTATION=1 make molecule-cluster
def test_the_ca_is_replaced_with_an_overlap_under_traffic(
    host: Any, hostvars: dict[str, Any], component: Component, request: pytest.FixtureRequest, tmp_path: Path,
) -> None:
    """The three steps of replacing the CA (`rotate-certs.yml -e pki_ca_rotation=STEP`), each while
    both collectors take events through clients that trust the deploy's ca.crt as it is at that
    step's start (a user's clients, given the new bundle between the steps): trust-new (both CAs in
    every bundle, certificates still of the old CA), sign-with-new (every listener presents a
    certificate of the new CA, the old one no longer verifies it), drop-old (every bundle holds the
    new CA alone). After each step every accepted event is in both stores exactly once and no
    collector refused for longer than REFUSED_MAX_S in a row."""
    groups = hostvars["groups"]
    apps = app_hosts_to_roll(host, groups)
    import testinfra

    inventory = request.config.option.ansible_inventory
    bundle = Path(str(setting(hostvars, "footprint_tls_ca_cert")))
    signer = bundle.parent / "ca-signer.crt"  # the CA that signs (roles/pki)
    old_ca = tmp_path / "old-ca.crt"
    old_ca.write_text(signer.read_text())
    host_bundle = f"{setting(hostvars, 'pki_host_dir')}/ca.crt"
    hosts = {h: testinfra.get_host(f"ansible://{h}?ansible_inventory={inventory}") for h in groups["footprint"]}
    where = listeners(request.config, groups)
    assert where, "no TLS listener in the inventory"
    report: list[str] = []
    for step in ("trust-new", "sign-with-new", "drop-old"):
        vars_file = tmp_path / f"{step}.yml"
        vars_file.write_text(f"pki_ca_rotation: {step}\n")
        traffic = CollectorTraffic([endpoints_of(component, resolved(request.config, h)) for h in apps], tmp_path / step)
        (tmp_path / step).mkdir()
        traffic.start()
        try:
            time.sleep(5)
            res, took = converge(inventory, vars_file, playbook="rotate-certs.yml")
            assert res.returncode == 0, f"{step}: {res.stdout[-6000:]}"
            time.sleep(5)
        finally:
            traffic.done.set()
        delivered = traffic.stop_and_check()
        refused = longest_refusal(traffic.logs)
        trusted = {h: pem_count(hosts[h].file(host_bundle).content_string) for h in hosts}
        new_ca = tmp_path / "new-ca.crt"
        new_ca.write_text(signer.read_text())
        if step == "trust-new":
            assert pem_count(bundle.read_text()) == 2, "the bundle does not hold both CAs"
            assert set(trusted.values()) == {2}, f"a host does not trust both CAs: {trusted}"
            unchanged = {n: verifies(a, p, str(old_ca), pg) for n, (a, p, pg) in where.items()}
            assert all(unchanged.values()), f"a listener's certificate is no longer the old CA's: {unchanged}"
        elif step == "sign-with-new":
            assert new_ca.read_text() != old_ca.read_text(), "the CA that signs did not change"
            assert set(trusted.values()) == {2}, f"a host does not trust both CAs: {trusted}"
            by_new = {n: verifies(a, p, str(new_ca), pg) for n, (a, p, pg) in where.items()}
            by_old = {n: verifies(a, p, str(old_ca), pg) for n, (a, p, pg) in where.items()}
            assert all(by_new.values()), f"a listener does not present a certificate of the new CA: {by_new}"
            assert not any(by_old.values()), f"a listener still presents a certificate of the old CA: {by_old}"
        else:
            assert bundle.read_text().strip() == new_ca.read_text().strip(), "the bundle still holds the old CA"
            assert set(trusted.values()) == {1}, f"a host still trusts two CAs: {trusted}"
            assert all(verifies(a, p, str(bundle), pg) for a, p, pg in where.values())
        report.append(f"{step} {took:.0f} s ({delivered.split(' ')[0]} events once each, refused at most {refused:.1f} s)")
        assert refused <= REFUSED_MAX_S, f"{step}: a collector refused events for {refused:.1f} s in a row"
    print("\nCA replaced under traffic: " + "; ".join(report))
