"""The kafka role's default source: the Apache archive and the .sha512 it publishes.

The real archive is unreachable here, so a loopback stand-in serves the same layout
(`<base>/<version>/kafka_2.13-<version>.tgz` and its `.sha512` in Apache's `gpg --print-md`
format): one on this machine's 127.0.0.1, where the control node fetches the checksum, one
on the test host's own 127.0.0.1, where the host downloads the archive. Both serve the
distribution testbed/kafka-dist builds. The java and kafka roles run as playbooks/kafka.yml runs
them, with `kafka_apache_base_url` pointing there and without the base and pki roles (TLS off):
the source is what is under test here, the rest of the roles is the scenarios' (each converge
costs half as much so).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOL = str(ROOT / "testbed" / "host")
CACHE = Path(os.environ.get("FOOTPRINT_CACHE", Path.home() / ".cache" / "footprint"))
NAME, IP = "fp-test-apache", "10.77.0.96"
VERSION = "4.0.2"
ARCHIVE = f"kafka_2.13-{VERSION}.tgz"
PORT = 18765


def tool(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    res = subprocess.run([TOOL, *args], text=True, capture_output=True, timeout=600)
    assert not check or res.returncode == 0, res.stderr
    return res


def apache_sha512_file(digest: str) -> str:
    """Apache's format: NAME: then the upper-case digest in spaced groups of 8, wrapped."""
    groups = [digest.upper()[i:i + 8] for i in range(0, len(digest), 8)]
    lines = [" ".join(groups[i:i + 8]) for i in range(0, len(groups), 8)]
    indent = " " * (len(ARCHIVE) + 2)
    return f"{ARCHIVE}: " + f"\n{indent}".join(lines) + "\n"


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The loopback stand-ins of the Apache archive; yields the control node's release dir."""
    tarball = CACHE / "artifacts" / ARCHIVE
    assert tarball.is_file(), "run testbed/kafka-dist/build first (make artifacts)"
    site = tmp_path_factory.mktemp("apache-archive")
    (site / VERSION).mkdir()
    shutil.copy(tarball, site / VERSION / ARCHIVE)
    server = subprocess.Popen([sys.executable, "-m", "http.server", str(PORT), "--bind", "127.0.0.1", "--directory", str(site)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    tool("up", NAME, IP)
    try:  # (no apt-get update here: the java role's apt task updates the stale lists of a new host itself)
        tool("exec", NAME, "mkdir", "-p", f"/srv/archive/{VERSION}")
        root = CACHE / "hosts" / NAME / "root"
        shutil.copy(tarball, root / "srv" / "archive" / VERSION / ARCHIVE)
        tool("exec", NAME, "sh", "-c", f"setsid -f timeout 1200 python3 -m http.server {PORT} --bind 127.0.0.1 "
             "--directory /srv/archive >/dev/null 2>&1")
        yield site / VERSION
    finally:
        server.kill()
        tool("down", NAME, check=False)


def converge(archive: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    hostvars = json.loads(tool("inventory", NAME).stdout)["all"]["hosts"][NAME]
    inv = {"all": {"children": {"footprint": {"hosts": {NAME: hostvars}, "children": {"kafka": {"hosts": {NAME: {}}}}}}}}
    (tmp_path / "hosts.yml").write_text(json.dumps(inv))
    (tmp_path / "kafka-source.yml").write_text(json.dumps([{
        "name": "Ensure Kafka runs, from the Apache archive's layout", "hosts": "kafka", "become": True,
        "roles": [{"role": "java"}, {"role": "kafka"}]}]))
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_ROLES_PATH=str(ROOT / "roles"))
    return subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(tmp_path / "hosts.yml"),
         str(tmp_path / "kafka-source.yml"), "-e", f"kafka_apache_base_url=http://127.0.0.1:{PORT}",
         "-e", "kafka_tls_enabled=false"],
        text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=ROOT, env=env, timeout=1200,
    )


def test_a_wrong_published_checksum_stops_before_kafka_is_installed(archive: Path, tmp_path: Path) -> None:
    (archive / f"{ARCHIVE}.sha512").write_text(apache_sha512_file("0" * 128))
    res = converge(archive, tmp_path)
    assert res.returncode != 0
    assert "checksum" in res.stdout.lower(), res.stdout[-3000:]
    assert tool("exec", NAME, "test", "-e", "/opt/kafka/current", check=False).returncode != 0
    assert tool("exec", NAME, "systemctl", "cat", "kafka", check=False).returncode != 0


def test_the_published_checksum_verifies_the_download(archive: Path, tmp_path: Path) -> None:
    digest = hashlib.sha512((archive / ARCHIVE).read_bytes()).hexdigest()
    (archive / f"{ARCHIVE}.sha512").write_text(apache_sha512_file(digest))
    res = converge(archive, tmp_path)
    assert res.returncode == 0, res.stdout[-4000:]
    assert tool("exec", NAME, "readlink", "/opt/kafka/current").stdout.strip().endswith(f"kafka_2.13-{VERSION}")
    assert tool("exec", NAME, "systemctl", "is-active", "kafka").stdout.strip() == "active"
    # the tools' class-data archive (roles/kafka/vars/main.yml, __kafka_tool_env), written once
    cds = tool("exec", NAME, "sh", "-c", "ls /opt/kafka/current/.footprint-tools-java-*.jsa").stdout.split()
    assert len(cds) == 1, cds
    # A second run (changed=0) is left to the scenarios since stop 55 (~65 s of CI's longest lane):
    # they run the same install tasks (the `local` source: the checksum read from the file beside the
    # archive instead of the published one); reading either file changes nothing on the host.
