"""Throwaway stand-in instances for integration-test fixtures.

Example (pytest)::

    sys.path.insert(0, "<repo>/testbed/clickhouse-standin")
    from chstandin import StandIn, StandInUser

    @pytest.fixture(scope="session")
    def clickhouse(tmp_path_factory):
        users = [StandInUser("footprint_writer", "w", ("INSERT, SELECT ON footprint.*",))]
        with StandIn(tmp_path_factory.mktemp("ch"), users=users,
                     databases=("footprint",)) as ch:
            yield ch   # ch.host, ch.http_port, ch.tcp_port
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self

from chstandin.config import UserSpec, write_init_config

STANDIN_SCRIPT = Path(__file__).resolve().parent.parent / "standin.py"
READY_MARK = "clickhouse-standin: ready:"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago on ``host``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class StandInUser:
    """A user of a throwaway instance; grants like ``"SELECT ON footprint.*"``."""

    name: str
    password: str
    grants: tuple[str, ...] = ()
    networks: tuple[str, ...] = ("::/0",)

    def spec(self) -> UserSpec:
        grants = tuple(g if g.upper().startswith("GRANT ") else f"GRANT {g}" for g in self.grants)
        return UserSpec(self.name, self.password, grants, self.networks)


@dataclass
class StandIn:
    """A stand-in process on ``host`` with its own config/data under ``base_dir``."""

    base_dir: Path
    users: list[StandInUser] | tuple[StandInUser, ...] = ()
    databases: tuple[str, ...] = ()
    host: str = "127.0.0.1"
    http_port: int = 0
    tcp_port: int = 0
    python: str = sys.executable
    start_timeout: float = 120.0
    # more config.d files (name -> XML text), e.g. the clickhouse role's footprint-cluster.xml
    extra_config: dict[str, str] = field(default_factory=dict)
    # more users.d files (name -> XML text), e.g. the clickhouse role's footprint-users.xml
    extra_users: dict[str, str] = field(default_factory=dict)
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def config_dir(self) -> Path:
        return self.base_dir / "config"

    @property
    def data_dir(self) -> Path:
        return self.base_dir / "data"

    @property
    def log_file(self) -> Path:
        return self.base_dir / "standin.log"

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    def start(self) -> Self:
        """Write the config (first time), start the process and wait for ``/ping``."""
        if not self.http_port:
            self.http_port = free_port(self.host)
        if not self.tcp_port:
            self.tcp_port = free_port(self.host)
        write_init_config(
            self.config_dir,
            self.http_port,
            self.tcp_port,
            [u.spec() for u in self.users],
            (self.host,),
        )
        for folder, files in (("config.d", self.extra_config), ("users.d", self.extra_users)):
            for name, text in files.items():
                path = self.config_dir / folder / name
                path.write_text(text)
                path.chmod(0o640)
        cmd = [
            self.python,
            str(STANDIN_SCRIPT),
            "serve",
            "--config-dir",
            str(self.config_dir),
            "--data-dir",
            str(self.data_dir),
        ]
        for db in self.databases:
            cmd += ["--create-database", db]
        self.base_dir.mkdir(parents=True, exist_ok=True)
        log_offset = self.log_file.stat().st_size if self.log_file.exists() else 0
        with open(self.log_file, "ab") as log:
            self._proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self._wait_ready(log_offset)
        return self

    def _wait_ready(self, log_offset: int) -> None:
        """Wait for this process's own "ready" line, then for ``/ping``."""
        deadline = time.monotonic() + self.start_timeout
        assert self._proc is not None
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"stand-in exited with {self._proc.returncode}: " + self._log_since(log_offset)[-2000:])
            if READY_MARK in self._log_since(log_offset):
                try:
                    with urllib.request.urlopen(f"{self.http_url}/ping", timeout=2) as resp:
                        if resp.read().strip() == b"Ok.":
                            return
                except (urllib.error.URLError, OSError):
                    pass
            time.sleep(0.3)
        self.stop()
        raise TimeoutError(f"stand-in was not ready within {self.start_timeout}s")

    def _log_since(self, offset: int) -> str:
        with open(self.log_file, "rb") as log:
            log.seek(offset)
            return log.read().decode(errors="replace")

    def stop(self, timeout: float = 60.0) -> int | None:
        """SIGTERM and wait; SIGKILL if it does not stop within ``timeout``."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return None if proc is None else proc.returncode
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            return proc.wait()

    def query(self, sql: str, user: str = "default", password: str = "") -> str:
        """Run ``sql`` over HTTP and return the body (raises on an HTTP error)."""
        req = urllib.request.Request(
            f"{self.http_url}/",
            data=sql.encode(),
            headers={"X-ClickHouse-User": user, "X-ClickHouse-Key": password},
        )
        with urllib.request.urlopen(req, timeout=60) as resp:
            return str(resp.read().decode())

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
