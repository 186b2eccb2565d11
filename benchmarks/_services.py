"""Start the same real local services the app's integration tests use (PostgreSQL, Kafka 4.0, ClickHouse)."""

from __future__ import annotations

import contextlib
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "app" / "tests"))

from footprint.migrate import migrate_clickhouse, migrate_postgres  # noqa: E402
from footprint.settings import Settings  # noqa: E402
from services import CH_PASSWORDS, LocalPostgres, private_kafka, start_clickhouse  # noqa: E402

# the stand-in of the stores running now (local_stores), for a benchmark's own figures (admin_query)
_RUNNING: dict[str, Any] = {}


def admin_query(sql: str) -> str:
    """``sql`` on the running ClickHouse stand-in as its default user (the system tables, which the app's users may
    not read), its answer as TSV text."""
    return str(_RUNNING["ch"].query(sql + " FORMAT TSV"))


@contextlib.contextmanager
def local_stores(base: Path) -> Iterator[tuple[Settings, Any]]:
    """Settings for fresh, migrated stores (PostgreSQL, the ClickHouse stand-in under ``base``), and the
    stand-in itself (its ``query`` runs SQL as ClickHouse's default user)."""
    pg = LocalPostgres()
    pg.init()
    pg.start()
    ch = None
    try:
        pg.setup_roles()
        ch = start_clickhouse(base / "ch")
        s = Settings(
            pg_dsn=pg.dsn("footprint_writer"), pg_owner_dsn=pg.dsn("footprint_owner"),
            pg_reader_dsn=pg.dsn("footprint_reader"),
            ch_host=ch.host, ch_port=ch.http_port,  # type: ignore[attr-defined]
            ch_password=CH_PASSWORDS["footprint_writer"], ch_owner_password=CH_PASSWORDS["footprint_owner"],
            ch_reader_password=CH_PASSWORDS["footprint_reader"],
        )
        migrate_postgres(s)
        migrate_clickhouse(s)
        _RUNNING["ch"] = ch
        yield s, ch
    finally:
        _RUNNING.pop("ch", None)
        if ch is not None:
            ch.stop()  # type: ignore[attr-defined]
        pg.destroy()


@contextlib.contextmanager
def services(partitions: int = 3, kafka: bool = True) -> Iterator[Settings]:
    """Settings for fresh, migrated stores and (unless ``kafka`` is False) a broker with a topic."""
    import shutil
    import signal

    from confluent_kafka.admin import AdminClient, NewTopic

    def _terminate(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)  # run the cleanup below on SIGTERM too

    signal.signal(signal.SIGTERM, _terminate)
    base = Path(tempfile.mkdtemp(prefix="fp-bench-"))
    try:
        with local_stores(base) as (s, _ch):
            if not kafka:
                yield s
                return
            with private_kafka(base / "kafka", heap="512m") as broker:  # type: ignore[attr-defined]
                name = f"bench-{uuid.uuid4().hex[:8]}"
                admin = AdminClient({"bootstrap.servers": broker.bootstrap})
                for f in admin.create_topics([NewTopic(name, partitions, 1),
                                              NewTopic(name + ".dlq", 1, 1)]).values():
                    f.result(30)
                yield s.model_copy(update={"kafka_bootstrap": broker.bootstrap, "kafka_topic": name,
                                           "kafka_dlq_topic": name + ".dlq", "kafka_group": name + "-g"})
    finally:
        shutil.rmtree(base, ignore_errors=True)


@contextlib.contextmanager
def reference_tree(rev: str) -> Iterator[Path]:
    """The ``app/src`` of git revision ``rev``, checked out into a temporary worktree (removed after)."""
    import shutil
    import subprocess

    tree = Path(tempfile.mkdtemp(prefix="fp-reference-"))
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(tree), rev], check=True,
                   capture_output=True)
    try:
        yield tree / "app" / "src"
    finally:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)], check=False)
        shutil.rmtree(tree, ignore_errors=True)


def machine() -> str:
    import os
    import platform

    cpu = "?"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return f"{platform.node()}: {os.cpu_count()} cores ({cpu}), {mem:.0f} GiB, {platform.platform()}, " \
           f"Python {platform.python_version()}; load average now {load} (machine shared with other jobs)"


def committed_total(probe: Any, parts: list[Any]) -> int:
    """Sum of the group's committed offsets (0 while the coordinator is still loading)."""
    from confluent_kafka import KafkaException

    try:
        return sum(max(tp.offset, 0) for tp in probe.committed(parts, timeout=10))
    except KafkaException:
        return 0
