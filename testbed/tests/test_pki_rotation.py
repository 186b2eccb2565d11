"""The pki role's certificates on the control node, run by Ansible against two made-up hosts that are
this machine (connection local): what a deploy's first run makes, a renewal on demand, the three
steps of replacing the CA with an overlap (roles/pki/tasks/ca_rotation.yml, as
playbooks/rotate-certs.yml runs them), and the layout of releases before the signing CA was kept
apart. Each state is checked with `cryptography`: which CA signed each host certificate, what
ca.crt (what everything trusts) holds, the file each host got, and that a second run changes
nothing. (The services taking the files up under traffic: tests/test_rotate_certs.py, in the
cluster scenario.)
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.exceptions import InvalidSignature

ROOT = Path(__file__).resolve().parents[2]
HOSTS = ("h1", "h2")

PLAY = """
- name: The pki role on made-up hosts (this machine)
  hosts: all
  gather_facts: false  # the names come from the inventory (the role's facts default to none)
  roles: [pki]
"""


class Pki:
    """A control node's pki directory and the hosts' certificate directories under `root`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.dir = root / "pki"
        python = str(Path(sys.executable))
        hosts = {h: {"ansible_connection": "local", "ansible_python_interpreter": python,
                     "pki_host_dir": str(root / "hosts" / h)} for h in HOSTS}
        (root / "hosts.yml").write_text(yaml.safe_dump(
            {"all": {"hosts": hosts, "vars": {"pki_dir": str(self.dir)}}}))
        (root / "play.yml").write_text(PLAY)

    def play(self, *extra: str) -> subprocess.CompletedProcess[str]:
        """The play, with extra vars `key=value`."""
        args = [a for e in extra for a in ("-e", e)]
        env = dict(os.environ, ANSIBLE_ROLES_PATH=str(ROOT / "roles"), ANSIBLE_NOCOLOR="1")
        return subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(self.root / "hosts.yml"),
                               str(self.root / "play.yml"), *args], text=True, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, cwd=ROOT, env=env, timeout=300)

    def run(self, *extra: str) -> int:
        """The play, which must pass; the number of tasks it changed on h1."""
        res = self.play(*extra)
        assert res.returncode == 0, res.stdout[-4000:]
        recap = re.search(r"^h1\s+:.*changed=(\d+)", res.stdout, re.M)
        assert recap, res.stdout[-2000:]
        return int(recap.group(1))

    def trusted(self) -> list[x509.Certificate]:
        return x509.load_pem_x509_certificates((self.dir / "ca.crt").read_bytes())

    def host(self, name: str) -> x509.Certificate:
        return x509.load_pem_x509_certificate((self.dir / f"{name}.crt").read_bytes())

    def signed_by(self, name: str, ca: x509.Certificate) -> bool:
        try:
            self.host(name).verify_directly_issued_by(ca)
        except (ValueError, TypeError, InvalidSignature):
            return False
        return True

    def on_hosts_as_on_the_control_node(self) -> None:
        for h in HOSTS:
            assert (self.root / "hosts" / h / "ca.crt").read_bytes() == (self.dir / "ca.crt").read_bytes(), h
            assert (self.root / "hosts" / h / "host.crt").read_bytes() == (self.dir / f"{h}.crt").read_bytes(), h


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


def test_a_first_run_makes_one_trusted_ca_that_signs_every_host(pki: Pki) -> None:
    assert pki.run() > 0
    [ca] = pki.trusted()
    assert (pki.dir / "ca-signer.crt").read_bytes().strip() == (pki.dir / "ca.crt").read_bytes().strip()
    assert all(pki.signed_by(h, ca) for h in HOSTS)
    pki.on_hosts_as_on_the_control_node()
    assert pki.run() == 0, "a second run changed something"


def test_renew_now_reissues_every_host_certificate_with_the_same_key(pki: Pki) -> None:
    before = {h: pki.host(h) for h in HOSTS}
    assert pki.run("pki_renew_now=true") > 0
    [ca] = pki.trusted()
    for h in HOSTS:
        after = pki.host(h)
        assert after.serial_number != before[h].serial_number, h
        assert after.public_key() == before[h].public_key(), h
        assert pki.signed_by(h, ca)
    pki.on_hosts_as_on_the_control_node()


def test_the_ca_is_replaced_with_an_overlap_in_three_steps(pki: Pki) -> None:
    [old] = pki.trusted()

    assert pki.run("pki_ca_rotation=trust-new") > 0
    trusted = pki.trusted()
    assert len(trusted) == 2 and trusted[0].subject == old.subject
    new = trusted[1]
    assert new.subject != old.subject, "the two CAs must be told apart by name"
    assert all(pki.signed_by(h, old) for h in HOSTS), "the old CA still signs"
    pki.on_hosts_as_on_the_control_node()
    assert pki.run("pki_ca_rotation=trust-new") == 0, "trust-new again made another CA"

    assert pki.run("pki_ca_rotation=sign-with-new") > 0
    assert [c.subject for c in pki.trusted()] == [new.subject, old.subject]
    assert all(pki.signed_by(h, new) and not pki.signed_by(h, old) for h in HOSTS)
    pki.on_hosts_as_on_the_control_node()
    # a rerun of the whole rotation's first step: nothing, not a second new CA
    assert pki.run("pki_ca_rotation=trust-new") == 0, "a new rotation started while the old CA is trusted"

    assert pki.run("pki_ca_rotation=drop-old") > 0
    assert [c.subject for c in pki.trusted()] == [new.subject]
    retired = list((pki.dir / "retired").glob("*/ca.crt"))
    assert [x509.load_pem_x509_certificate(p.read_bytes()).subject for p in retired] == [old.subject]
    assert not (pki.dir / "ca-previous.crt").exists() and not (pki.dir / "ca-previous.key").exists()
    assert all(pki.signed_by(h, new) for h in HOSTS)
    pki.on_hosts_as_on_the_control_node()


def test_the_layout_of_earlier_releases_keeps_its_ca(pki: Pki) -> None:
    """Before the signing CA was kept apart, ca.crt was it: the first run keeps that very CA."""
    (pki.dir / "ca-signer.crt").unlink()
    before = (pki.dir / "ca.crt").read_bytes()
    assert pki.run() == 1  # ca-signer.crt made from ca.crt, on the control node only
    assert (pki.dir / "ca-signer.crt").read_bytes() == before
    assert (pki.dir / "ca.crt").read_bytes() == before


def test_a_rotation_step_is_refused_for_your_own_ca(pki: Pki) -> None:
    res = pki.play("pki_ca_rotation=trust-new", "pki_ca_generate=false")
    assert res.returncode != 0
    assert "only for a CA and host certificates made here" in " ".join(res.stdout.split())
