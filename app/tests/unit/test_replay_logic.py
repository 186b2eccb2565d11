"""``footprint replay``'s pure parts: --from, the target offsets, the running-consumer check, usage."""

from __future__ import annotations

import socket
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import CollectorRegistry

from footprint.cli import main
from footprint.httpd import serve
from footprint.replay import GroupReset, Reset, consumer_running, parse_from, target_offsets
from footprint.replaydlq import Redrive, _source
from footprint.settings import Settings

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)


def test_from_is_earliest_a_span_or_a_time_in_the_past() -> None:
    assert parse_from("earliest", NOW) is None
    assert parse_from("90m", NOW) == NOW - timedelta(minutes=90)
    assert parse_from("2026-12-01T10:00", NOW) == datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
    assert parse_from("2026-12-01T11:00+01:00", NOW) == datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
    for bad in ("now", "tomorrow", "2027-01-01", "latest"):
        with pytest.raises(ValueError, match="earliest"):
            parse_from(bad, NOW)


def test_targets_are_the_low_watermark_or_the_first_offset_at_the_time_within_the_retained() -> None:
    marks = {0: (0, 10), 1: (5, 8), 2: (3, 3)}
    assert target_offsets(marks, None) == {0: 0, 1: 5, 2: 3}
    # found offsets as offsets_for_times gives them; None: no message at or after the time (-> the end)
    assert target_offsets(marks, {0: 7, 1: None, 2: None}) == {0: 7, 1: 8, 2: 3}
    assert target_offsets(marks, {0: 2, 1: 2, 2: 9}) == {0: 2, 1: 5, 2: 3}  # clamped to what is retained
    assert target_offsets(marks, {}) == {0: 10, 1: 8, 2: 3}


def test_exit_codes_say_whether_everything_was_done() -> None:
    assert GroupReset("t", "g", [Reset(0, 9, 0)]).exit_code == 0
    assert GroupReset("t", "g", [Reset(0, 9, 0)], unassigned=[1]).exit_code == 1
    assert GroupReset("t", "g").exit_code == 1
    assert Redrive(read=3).exit_code == 0
    assert Redrive().exit_code == 0  # nothing to re-drive is not a failure
    assert Redrive(read=3, failing=Counter({"not JSON": 1})).exit_code == 1


def test_a_dead_letters_source_comes_from_its_headers() -> None:
    headers = {"footprint.source.topic": "t", "footprint.source.partition": "2", "footprint.source.offset": "41"}
    assert _source(headers) == ("t", 2, 41)
    assert _source({**headers, "footprint.source.offset": "-1"}) is None
    assert _source({}) is None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_consumer_answering_on_its_health_port_is_running_whatever_it_says() -> None:
    port = _free_port()
    settings = Settings(consumer_http_host="0.0.0.0", consumer_http_port=port)
    assert consumer_running(settings) is None  # nothing listens
    assert consumer_running(settings.model_copy(update={"consumer_http_port": 0})) is None  # no endpoint
    httpd = serve("127.0.0.1", port, CollectorRegistry(), lambda: (False, {"status": "stuck"}))
    try:
        assert consumer_running(settings) == f"http://127.0.0.1:{port}/healthz"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_replay_without_from_or_with_a_bad_one_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay"]) == 2
    assert "--from earliest|TIME is required" in capsys.readouterr().err
    assert main(["replay", "--from", "yesterday"]) == 2
    assert "want earliest" in capsys.readouterr().err


def test_the_re_drive_summary_names_each_figure_and_the_reasons() -> None:
    r = Redrive(read=5, stored=Counter(postgres=2, clickhouse=1), already=Counter(clickhouse=1), erased=1,
                failing=Counter({"not JSON": 2}))
    assert r.lines(dry_run=False) == [
        "dead letters read: 5", "stored (new): postgres 2, clickhouse 1", "already stored: postgres 0, clickhouse 1",
        "erased users' events (not stored): 1", "still failing: 2", "  2  not JSON"]
    assert "nothing written" in Redrive(read=1, stored=Counter({"dry run": 1})).lines(dry_run=True)[1]
