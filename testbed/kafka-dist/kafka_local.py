"""Throwaway single-node KRaft Kafka broker from the assembled distribution tarball.

Used by `run-local` (the CLI) and importable by test fixtures:

    from kafka_local import LocalKafka
    with LocalKafka(data_dir, port=19092) as kafka:
        kafka.create_topic("web-logs-topic", partitions=1)
        ... kafka.bootstrap ...   # "127.0.0.1:19092"

Only the standard library is used. The broker runs in its own session (process group) and is
stopped by its pid, which is kept in DATA_DIR/kafka.pid.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from pathlib import Path
from types import TracebackType
from typing import Self

HERE = Path(__file__).resolve().parent
DIST_NAME = "kafka_2.13-4.0.2"
STARTED_MARKER = "Kafka Server started"


def cache_dir() -> Path:
    return Path(os.environ.get("FOOTPRINT_CACHE", str(Path.home() / ".cache" / "footprint")))


def default_tarball() -> Path:
    return cache_dir() / "artifacts" / f"{DIST_NAME}.tgz"


def ensure_tarball(tarball: Path | None = None) -> Path:
    """Return the distribution tarball, building it (cached, see ./build) when absent."""
    if tarball is not None:
        if not tarball.is_file():
            raise FileNotFoundError(f"Kafka tarball not found: {tarball}")
        return tarball
    out = subprocess.run([str(HERE / "build")], check=True, stdout=subprocess.PIPE, text=True).stdout
    return Path(out.strip().splitlines()[-1])


def _sha512(path: Path) -> str:
    digest = hashlib.sha512()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def ensure_home(tarball: Path) -> Path:
    """Extract the tarball once into the cache (keyed by its SHA-512) and return KAFKA_HOME."""
    key = _sha512(tarball)[:16]
    root = cache_dir() / "kafka-dist" / key
    home = root / DIST_NAME
    if (home / "bin" / "kafka-server-start.sh").is_file():
        return home
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=root))
    try:
        with tarfile.open(tarball) as tar:
            tar.extractall(tmp, filter="tar")
        try:
            (tmp / DIST_NAME).rename(home)
        except OSError:
            if not (home / "bin" / "kafka-server-start.sh").is_file():
                raise  # someone else won the race only if the result is complete
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return home


def java_major(java: str) -> int:
    out = subprocess.run(
        [java, "-version"],
        check=True,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    ).stderr
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    if not match:
        raise RuntimeError(f"cannot parse java version from: {out!r}")
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited child not yet reaped) counts as gone.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class LocalKafka:
    """A single-node KRaft broker+controller listening on host:port (controller on port+1)."""

    def __init__(
        self,
        data_dir: Path | str,
        port: int = 19092,
        *,
        host: str = "127.0.0.1",
        controller_port: int | None = None,
        heap: str = "256m",
        tarball: Path | None = None,
        java_home: str | None = None,
        cluster_id: str | None = None,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.host = host
        self.port = port
        self.controller_port = controller_port if controller_port is not None else port + 1
        self.heap = heap
        self.tarball = tarball
        self.java_home = java_home if java_home is not None else os.environ.get("JAVA_HOME")
        self.cluster_id = cluster_id
        self.home: Path | None = None

    # --- paths -----------------------------------------------------------------------------
    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "kafka.pid"

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"

    @property
    def config_file(self) -> Path:
        return self.data_dir / "server.properties"

    @property
    def kraft_dir(self) -> Path:
        return self.data_dir / "kraft"

    @property
    def home_file(self) -> Path:
        return self.data_dir / "kafka.home"

    # --- helpers ---------------------------------------------------------------------------
    def _env(self, heap: str | None = None) -> dict[str, str]:
        env = dict(os.environ)
        if self.java_home:
            env["JAVA_HOME"] = self.java_home
        env["LOG_DIR"] = str(self.log_dir)
        if heap:
            env["KAFKA_HEAP_OPTS"] = f"-Xms{heap} -Xmx{heap}"
        return env

    def _java(self) -> str:
        return str(Path(self.java_home) / "bin" / "java") if self.java_home else "java"

    def _bin(self, tool: str) -> str:
        home = self.home
        if home is None:
            home = Path(self.home_file.read_text().strip())
        return str(home / "bin" / tool)

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _pid_alive(pid) else None

    def _write_config(self) -> None:
        h, p, c = self.host, self.port, self.controller_port
        lines = [
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.bootstrap.servers={h}:{c}",
            f"listeners=PLAINTEXT://{h}:{p},CONTROLLER://{h}:{c}",
            f"advertised.listeners=PLAINTEXT://{h}:{p},CONTROLLER://{h}:{c}",
            "inter.broker.listener.name=PLAINTEXT",
            "controller.listener.names=CONTROLLER",
            "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            f"log.dirs={self.kraft_dir}",
            "num.partitions=1",
            "auto.create.topics.enable=false",
            "offsets.topic.replication.factor=1",
            "offsets.topic.num.partitions=1",
            "share.coordinator.state.topic.replication.factor=1",
            "share.coordinator.state.topic.min.isr=1",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "group.initial.rebalance.delay.ms=0",
            "log.retention.hours=24",
        ]
        self.config_file.write_text("\n".join(lines) + "\n")

    def _tail_log(self, n: int = 40) -> str:
        out = self.log_dir / "kafkaServer.out"
        try:
            return "\n".join(out.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no broker output)"

    # --- lifecycle -------------------------------------------------------------------------
    def start(self, timeout: float = 120.0) -> Self:
        """Format (first time only) and start the broker; return once it accepts requests."""
        if self.pid() is not None:
            raise RuntimeError(f"a broker from {self.data_dir} is already running (pid {self.pid()})")
        if java_major(self._java()) < 17:
            raise RuntimeError("Kafka 4.0 needs Java 17 or newer (set JAVA_HOME)")
        for port in (self.port, self.controller_port):
            if _port_open(self.host, port):
                raise RuntimeError(f"{self.host}:{port} is already in use")
        self.home = ensure_home(ensure_tarball(self.tarball))
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(exist_ok=True)
        self.home_file.write_text(f"{self.home}\n")
        self._write_config()
        if not (self.kraft_dir / "meta.properties").is_file():
            cluster_id = self.cluster_id or _cluster_id()
            subprocess.run(
                [
                    self._bin("kafka-storage.sh"),
                    "format",
                    "--standalone",
                    f"--cluster-id={cluster_id}",
                    "--config",
                    str(self.config_file),
                ],
                check=True,
                env=self._env("128m"),
                stdout=subprocess.DEVNULL,
            )
        out_path = self.log_dir / "kafkaServer.out"
        offset = out_path.stat().st_size if out_path.exists() else 0
        out = out_path.open("ab")
        proc = subprocess.Popen(
            [self._bin("kafka-server-start.sh"), str(self.config_file)],
            env=self._env(self.heap),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=self.data_dir,
        )
        out.close()
        self.pid_file.write_text(f"{proc.pid}\n")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                self.pid_file.unlink(missing_ok=True)
                raise RuntimeError(f"Kafka exited with {proc.returncode} during start:\n{self._tail_log()}")
            if self._started(offset) and _port_open(self.host, self.port):
                return self
            time.sleep(0.3)
        self.stop()
        raise TimeoutError(f"Kafka did not start within {timeout:.0f}s:\n{self._tail_log()}")

    def _started(self, offset: int) -> bool:
        """True once this run's console output (after byte offset) says the server started."""
        try:
            with (self.log_dir / "kafkaServer.out").open("rb") as fh:
                fh.seek(offset)
                return STARTED_MARKER.encode() in fh.read()
        except OSError:
            return False

    def stop(self, timeout: float = 60.0) -> bool:
        """SIGTERM the broker (its whole process group), SIGKILL after timeout. True if it ran."""
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _pid_alive(pid) and time.monotonic() < deadline:
            _reap(pid)
            time.sleep(0.2)
        if _pid_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            time.sleep(0.5)
        _reap(pid)
        self.pid_file.unlink(missing_ok=True)
        return True

    def create_topic(self, name: str, partitions: int = 1, timeout: float = 60.0) -> None:
        subprocess.run(
            [
                self._bin("kafka-topics.sh"),
                "--bootstrap-server",
                self.bootstrap,
                "--create",
                "--if-not-exists",
                "--topic",
                name,
                "--partitions",
                str(partitions),
                "--replication-factor",
                "1",
            ],
            check=True,
            env=self._env("128m"),
            stdout=subprocess.DEVNULL,
            timeout=timeout,
        )

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def _cluster_id() -> str:
    """A KRaft cluster id (base64url UUID) that does not start with '-'."""
    import base64

    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="run-local",
        description="Start/stop a throwaway single-node KRaft Kafka broker on this machine.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    start = sub.add_parser("start", help="format (first time) and start; prints host:port last")
    start.add_argument("--data-dir", required=True, type=Path)
    start.add_argument("--port", type=int, default=19092)
    start.add_argument("--controller-port", type=int, default=None, help="default: PORT+1")
    start.add_argument("--host", default="127.0.0.1")
    start.add_argument("--heap", default="256m")
    start.add_argument("--tarball", type=Path, default=None)
    start.add_argument("--timeout", type=float, default=120.0)
    start.add_argument("--topic", action="append", default=[], metavar="NAME[:PARTITIONS]")
    stop = sub.add_parser("stop", help="stop the broker started from DATA_DIR")
    stop.add_argument("--data-dir", required=True, type=Path)
    stop.add_argument("--timeout", type=float, default=60.0)
    status = sub.add_parser("status", help="exit 0 and print host:port if running")
    status.add_argument("--data-dir", required=True, type=Path)
    args = parser.parse_args(argv)

    if args.command == "start":
        kafka = LocalKafka(
            args.data_dir,
            args.port,
            host=args.host,
            controller_port=args.controller_port,
            heap=args.heap,
            tarball=args.tarball,
        )
        kafka.start(timeout=args.timeout)
        for spec in args.topic:
            name, _, parts = spec.partition(":")
            kafka.create_topic(name, int(parts or 1))
        print(f"pid {kafka.pid()} data {kafka.data_dir}", file=sys.stderr)
        print(kafka.bootstrap)
        return 0
    kafka = LocalKafka(args.data_dir)
    if args.command == "stop":
        if not kafka.stop(timeout=args.timeout):
            print(f"no broker running from {kafka.data_dir}", file=sys.stderr)
        return 0
    pid = kafka.pid()
    if pid is None:
        print("stopped")
        return 1
    config = kafka.config_file.read_text()
    match = re.search(r"^listeners=PLAINTEXT://([^,\n]+)", config, re.MULTILINE)
    print(match.group(1) if match else f"running (pid {pid})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
