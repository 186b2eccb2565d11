"""settings.py: each setting defined once, in one part; ``Settings`` is the parts read together."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from footprint import settings as settings_module
from footprint.settings import (
    ClickHouseSettings,
    KeySettings,
    QuerySettings,
    RetentionSettings,
    Settings,
)
from footprint.sqlapi import limits

PARTS = [cls for cls in vars(settings_module).values()
         if isinstance(cls, type) and issubclass(cls, settings_module._Part) and cls not in (settings_module._Part,
                                                                                            Settings)]


def test_every_setting_is_defined_in_exactly_one_part() -> None:
    owners: dict[str, list[str]] = {}
    for part in PARTS:
        for name in part.model_fields:
            owners.setdefault(name, []).append(part.__name__)
    assert {name: parts for name, parts in owners.items() if len(parts) > 1} == {}
    assert set(Settings.model_fields) == set(owners) | {"log_level"}
    assert all(issubclass(Settings, part) for part in PARTS)


def test_the_fields_keep_the_order_of_the_parts() -> None:
    """The order of the variables (and of the errors of several bad values) is the parts' order."""
    in_parts = [name for part in PARTS for name in part.model_fields]
    assert list(Settings.model_fields) == [*in_parts, "log_level"]


def test_a_part_alone_checks_its_values() -> None:
    with pytest.raises(ValidationError, match="want host, host:port"):
        ClickHouseSettings(ch_host="a:x")
    with pytest.raises(ValidationError, match="both public"):
        KeySettings(api_keys="k1,k2", private_keys="k2")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="must be 0 \\(forever\\) or at least"):
        RetentionSettings(retention_months=13, rollup_retention_months=6)
    assert ClickHouseSettings(ch_host="a, b:8124").ch_endpoints() == [("a", 8123), ("b", 8124)]


def test_a_module_takes_the_part_it_uses() -> None:
    part = QuerySettings(query_max_result_rows=7)
    assert limits(part)["max_result_rows"] == 7
    assert limits(Settings(query_max_result_rows=7)) == limits(part)  # a Settings is each of its parts


def test_the_parts_are_frozen(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FOOTPRINT_KAFKA_TOPIC", "t")
    settings = Settings()
    with pytest.raises(ValidationError, match="frozen"):
        settings.kafka_topic = "other"
    assert settings.model_copy(update={"kafka_topic": "other"}).kafka_topic == "other"
    assert settings.processor().topic == "t"
