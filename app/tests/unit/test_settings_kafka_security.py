"""Settings.kafka_client_config: one definition of every Kafka client's security options."""

from __future__ import annotations

import pytest

from footprint.settings import Settings


def test_plaintext_by_default() -> None:
    config = Settings(kafka_bootstrap="b:9092").kafka_client_config("collector")
    assert config == {"bootstrap.servers": "b:9092", "security.protocol": "PLAINTEXT"}


@pytest.mark.parametrize("principal", ["collector", "consumer"])
def test_sasl_ssl_uses_the_principal_of_the_client(principal: str) -> None:
    settings = Settings(
        kafka_bootstrap="b:9092", kafka_security_protocol="SASL_SSL", kafka_ssl_ca_location="/etc/footprint/ca.crt",
        kafka_collector_user="c", kafka_collector_password="cpw",
        kafka_consumer_user="k", kafka_consumer_password="kpw",
    )
    config = settings.kafka_client_config(principal)  # type: ignore[arg-type]
    user, password = ("c", "cpw") if principal == "collector" else ("k", "kpw")
    assert config == {
        "bootstrap.servers": "b:9092", "security.protocol": "SASL_SSL",
        "ssl.endpoint.identification.algorithm": "https",
        "ssl.ca.location": "/etc/footprint/ca.crt", "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": user, "sasl.password": password,
    }
    assert "cpw" not in repr(settings) and "kpw" not in repr(settings)
