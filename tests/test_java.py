"""The java role: Java 21 headless, JAVA_HOME, the version check."""

from typing import Any

# Java is installed where Kafka runs.
testinfra_hosts = ["ansible://kafka"]


def test_java_version(host: Any) -> None:
    out = host.run(". /etc/profile.d/footprint-java.sh && \"$JAVA_HOME/bin/java\" -version")
    assert out.rc == 0, out.stderr
    assert 'version "21' in out.stderr, out.stderr


def test_java_is_headless(host: Any) -> None:
    assert host.package("openjdk-21-jre-headless").is_installed or host.package("temurin-21-jre").is_installed
    assert not host.package("openjdk-21-jre").is_installed


def test_java_on_path(host: Any) -> None:
    assert host.run("java -version").rc == 0
