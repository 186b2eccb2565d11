from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from footprint.settings import Settings


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def postgres() -> Iterator[Any]:
    from services import LocalPostgres

    pg = LocalPostgres()
    pg.init()
    pg.start()
    try:
        pg.setup_roles()
        yield pg
    finally:
        pg.destroy()


@pytest.fixture(scope="session")
def clickhouse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from services import start_clickhouse

    ch: Any = start_clickhouse(tmp_path_factory.mktemp("clickhouse"))
    try:
        yield ch
    finally:
        ch.stop()


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from services import private_kafka

    with private_kafka(tmp_path_factory.mktemp("kafka")) as broker:  # type: ignore[attr-defined]
        yield broker


@pytest.fixture(scope="session")
def base_settings(postgres: Any, clickhouse: Any, kafka: Any) -> Settings:
    from footprint.migrate import migrate_clickhouse, migrate_postgres
    from services import CH_PASSWORDS

    s = Settings(
        kafka_bootstrap=kafka.bootstrap,
        pg_dsn=postgres.dsn("footprint_writer"),
        pg_owner_dsn=postgres.dsn("footprint_owner"),
        pg_reader_dsn=postgres.dsn("footprint_reader"),
        ch_host=clickhouse.host,
        ch_port=clickhouse.http_port,
        ch_password=CH_PASSWORDS["footprint_writer"],
        ch_owner_password=CH_PASSWORDS["footprint_owner"],
        ch_reader_password=CH_PASSWORDS["footprint_reader"],
        batch_max_seconds=0.3,
        retry_max_seconds=2.0,
        api_keys="test-key",
    )
    migrate_postgres(s)
    migrate_clickhouse(s)
    return s


@pytest.fixture
def settings(base_settings: Settings, kafka: Any) -> Settings:
    """Per test: fresh topic, dead-letter topic and consumer group."""
    from confluent_kafka.admin import NewTopic

    from helpers import create_topics

    name = f"t-{uuid.uuid4().hex[:10]}"
    create_topics(kafka.bootstrap, [NewTopic(name, 3, 1), NewTopic(name + ".dlq", 1, 1)])
    return base_settings.model_copy(
        update={"kafka_topic": name, "kafka_dlq_topic": name + ".dlq", "kafka_group": name + "-g"}
    )


@pytest.fixture
def tmp(tmp_path: Path) -> Path:
    return tmp_path
