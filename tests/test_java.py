"""The java role: the required Java major (21 by default; 17 where an inventory asks for Debian 12's
own OpenJDK), headless, JAVA_HOME, the version check."""

from typing import Any

from conftest import setting

# Java is installed where Kafka runs.
testinfra_hosts = ["ansible://kafka"]


def test_java_version(host: Any, hostvars: dict[str, Any]) -> None:
    major = int(setting(hostvars, "java_major_version"))
    out = host.run(". /etc/profile.d/footprint-java.sh && \"$JAVA_HOME/bin/java\" -version")
    assert out.rc == 0, out.stderr
    assert f'version "{major}' in out.stderr, out.stderr


def test_java_is_headless(host: Any, hostvars: dict[str, Any]) -> None:
    major = int(setting(hostvars, "java_major_version"))
    assert host.package(f"openjdk-{major}-jre-headless").is_installed or host.package(f"temurin-{major}-jre").is_installed
    assert not host.package(f"openjdk-{major}-jre").is_installed


def test_java_on_path(host: Any) -> None:
    assert host.run("java -version").rc == 0
