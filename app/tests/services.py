"""Real throwaway services for the integration tests: PostgreSQL (Debian), Kafka 4.0, ClickHouse stand-in."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "testbed" / "kafka-dist"))
sys.path.insert(0, str(REPO / "testbed" / "clickhouse-standin"))

PG_PASSWORDS = {"footprint_owner": "owner-pw", "footprint_writer": "writer-pw", "footprint_reader": "reader-pw"}
CH_PASSWORDS = {
    "footprint_owner": "ch-owner-pw",
    "footprint_writer": "ch-writer-pw",
    "footprint_reader": "ch-reader-pw",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pg_bindir() -> Path:
    for version in ("17", "16", "15"):
        path = Path(f"/usr/lib/postgresql/{version}/bin")
        if (path / "initdb").exists():
            return path
    raise RuntimeError("PostgreSQL server binaries not found (apt-get install postgresql)")


@dataclass
class LocalPostgres:
    """A throwaway cluster run as the unprivileged ``postgres`` user (root cannot run postgres)."""

    port: int = field(default_factory=free_port)
    base: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="fp-pg-", dir="/tmp")))

    def _as_pg(self, *cmd: str) -> subprocess.CompletedProcess[str]:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        return subprocess.run([*prefix, *cmd], check=True, capture_output=True, text=True)

    @property
    def data(self) -> Path:
        return self.base / "data"

    def init(self, waldir: Path | None = None) -> None:
        """initdb; ``waldir``: the WAL elsewhere than the data directory (a directory in ``base``)."""
        if os.geteuid() == 0:
            shutil.chown(self.base, "postgres", "postgres")
        self._as_pg(str(pg_bindir() / "initdb"), "-D", str(self.data), "-U", "postgres",
                    "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8",
                    *([f"--waldir={waldir}"] if waldir else []))
        with (self.data / "postgresql.conf").open("a") as f:
            f.write(
                f"port = {self.port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{self.base}'\n"
                "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\nshared_buffers = 256MB\n"
                "max_wal_size = 2GB\n"
            )

    def start(self) -> None:
        self._as_pg(str(pg_bindir() / "pg_ctl"), "-D", str(self.data), "-l", str(self.base / "log"),
                    "-w", "-t", "60", "start")

    def stop(self) -> None:
        self._as_pg(str(pg_bindir() / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def psql(self, sql: str, db: str = "postgres") -> str:
        return self._as_pg("psql", "-h", str(self.base), "-p", str(self.port), "-U", "postgres", "-d", db,
                           "-v", "ON_ERROR_STOP=1", "-qAt", "-c", sql).stdout

    def setup_roles(self) -> None:
        """Like the postgresql role: owner owns the database; writer/reader may connect."""
        for role, pw in PG_PASSWORDS.items():
            self.psql(f"CREATE ROLE {role} LOGIN PASSWORD '{pw}'")
        self.psql("CREATE DATABASE footprint OWNER footprint_owner")
        self.psql("REVOKE ALL ON DATABASE footprint FROM PUBLIC")
        self.psql("GRANT CONNECT, TEMP ON DATABASE footprint TO footprint_writer")
        self.psql("GRANT CONNECT ON DATABASE footprint TO footprint_reader")

    def create_database(self, name: str) -> None:
        """Another database set up as ``footprint`` is (tests that need stores of their own)."""
        self.psql(f"CREATE DATABASE {name} OWNER footprint_owner")
        self.psql(f"REVOKE ALL ON DATABASE {name} FROM PUBLIC")
        self.psql(f"GRANT CONNECT, TEMP ON DATABASE {name} TO footprint_writer")
        self.psql(f"GRANT CONNECT ON DATABASE {name} TO footprint_reader")

    def dsn(self, role: str, db: str = "footprint") -> str:
        return (f"host=127.0.0.1 port={self.port} dbname={db} user={role} "
                f"password={PG_PASSWORDS[role]}")

    def destroy(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.stop()
        shutil.rmtree(self.base, ignore_errors=True)


# databases besides footprint that tests may take for themselves (in both stores; one test each)
OWN_DATABASES = ("footprint_retention", "footprint_upgrade", "footprint_audit", "footprint_visits", "footprint_goals",
                 "footprint_goals_ui")


def start_clickhouse(base: Path) -> object:
    from chstandin import StandIn, StandInUser

    dbs = ("footprint", *OWN_DATABASES)
    users = [
        # the owner creates tables: ClickHouse also wants a grant per table engine used
        StandInUser("footprint_owner", CH_PASSWORDS["footprint_owner"],
                    (*(f"ALL ON {db}.*" for db in dbs), "TABLE ENGINE ON ReplacingMergeTree",
                     "TABLE ENGINE ON AggregatingMergeTree")),
        StandInUser("footprint_writer", CH_PASSWORDS["footprint_writer"],
                    tuple(f"INSERT, SELECT ON {db}.*" for db in dbs)),
        StandInUser("footprint_reader", CH_PASSWORDS["footprint_reader"], tuple(f"SELECT ON {db}.*" for db in dbs)),
    ]
    ch = StandIn(base, users=users, databases=dbs)
    ch.start()
    return ch


def wait_port_closed(port: int, timeout: float = 30) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                time.sleep(0.2)
        except OSError:
            return
    raise TimeoutError(f"port {port} still open")


def private_kafka(data_dir: Path, heap: str = "256m") -> object:
    """A throwaway broker run from a private extraction of the distribution.

    ``kafka-server-stop.sh`` without arguments stops every broker started from *its* distribution
    directory; other jobs on a shared machine use the shared extraction, so ours lives elsewhere.
    """
    from kafka_local import LocalKafka, ensure_tarball

    tarball = ensure_tarball()  # shared cache: built once
    shared = Path(os.environ.get("FOOTPRINT_CACHE", str(Path.home() / ".cache" / "footprint")))
    os.environ["FOOTPRINT_CACHE"] = str(shared / "app-tests")
    return LocalKafka(data_dir, port=free_port(), controller_port=free_port(), heap=heap, tarball=tarball)
