"""Run the ClickHouse engine from chdb-core as a network server.

The engine is the extension module ``chdb/_chdb.abi3.so``.  It is loaded as a
file on purpose: ``import chdb`` would open and close an embedded session,
after which a second engine start in the process fails.  The module-level
``query()`` runs clickhouse-local, which opens the HTTP and native listeners
on ``SYSTEM START LISTEN`` and keeps them open while that call is running; so
the serving call ends with a read from a FIFO that the stop path writes to.
"""

from __future__ import annotations

import ctypes
import errno
import importlib.util
import os
import signal
import socket
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, ModuleType
from typing import Protocol

from chstandin.config import (
    ServerSettings,
    build_local_config,
    read_server_settings,
    write_xml,
)

_RTLD_DEEPBIND = 0x8
STOP_FIFO = "stop.fifo"


class _QueryResult(Protocol):
    def has_error(self) -> bool: ...
    def error_message(self) -> str: ...


def chdb_dir() -> Path:
    """Directory of the installed ``chdb`` package, found without importing it."""
    spec = importlib.util.find_spec("chdb")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("chdb-core is not installed in this Python environment")
    return Path(next(iter(spec.submodule_search_locations)))


def load_engine() -> ModuleType:
    """Load chdb's extension module directly (see module docstring)."""
    pkg = chdb_dir()
    so_path = pkg / "_chdb.abi3.so"
    cwd = os.getcwd()
    os.chdir(pkg)  # the extension finds its pybind11 helper library relative to cwd
    try:
        ctypes.CDLL(str(so_path), mode=sys.getdlopenflags() | _RTLD_DEEPBIND)
        spec = importlib.util.spec_from_file_location("_chdb", so_path)
        if spec is None or spec.loader is None:
            raise RuntimeError(f"cannot load {so_path}")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        os.chdir(cwd)
    return module


def _quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _ident(name: str) -> str:
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def serving_sql(settings: ServerSettings, fifo: Path, databases: list[str]) -> str:
    """The one long-running statement list that serves until ``fifo`` is written."""
    parts = [f"CREATE DATABASE IF NOT EXISTS {_ident(db)}" for db in databases]
    if settings.http_port is not None:
        parts.append("SYSTEM START LISTEN HTTP")
    if settings.tcp_port is not None:
        parts.append("SYSTEM START LISTEN TCP")
    parts.append(f"SELECT count() FROM file({_quote(str(fifo))}, 'LineAsString')")
    return "; ".join(parts)


@dataclass
class _Outcome:
    error: str | None = None
    finished: bool = False


def _listening_inodes(port: int) -> set[str]:
    """Socket inodes listening on ``port`` (any address) in this network namespace."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                inodes.add(inode)
    return inodes


def _own_socket_inodes() -> set[str]:
    inodes: set[str] = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def _wait_listening(settings: ServerSettings, worker: threading.Thread, timeout: float) -> bool:
    """Wait until THIS process listens on every configured port.

    Checking our own sockets (not just that the port answers) keeps another
    server on the same port from passing for this one.
    """
    ports = [p for p in (settings.http_port, settings.tcp_port) if p is not None]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and worker.is_alive():
        own = _own_socket_inodes()
        if all(_listening_inodes(port) & own for port in ports):
            return True
        time.sleep(0.2)
    return False


def _sd_notify(message: str) -> None:
    target = os.environ.get("NOTIFY_SOCKET")
    if not target:
        return
    address = "\0" + target[1:] if target.startswith("@") else target
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(address)
            sock.sendall(message.encode())
        except OSError:
            pass


def _release(fifo: Path, worker: threading.Thread) -> None:
    """Write to the FIFO once its reader (the serving query) has it open."""
    while worker.is_alive():
        try:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as exc:
            if exc.errno in (errno.ENXIO, errno.ENOENT):  # reader not there yet
                worker.join(0.2)
                continue
            raise
        try:
            os.write(fd, b"stop\n")
        finally:
            os.close(fd)
        return


def log(message: str) -> None:
    """One line to stderr (journald picks it up under systemd)."""
    print(f"clickhouse-standin: {message}", file=sys.stderr, flush=True)


def serve(
    config_dir: Path,
    data_dir: Path,
    run_dir: Path | None = None,
    databases: list[str] | None = None,
    ready_timeout: float = 120.0,
) -> int:
    """Serve ``config_dir`` on its configured listeners until SIGTERM/SIGINT."""
    settings = read_server_settings(config_dir)
    for name in settings.unserved:
        log(f"<{name}> is configured but the stand-in does not serve it")
    data_dir.mkdir(parents=True, exist_ok=True)
    own_run_dir = run_dir is None
    work = Path(tempfile.mkdtemp(prefix="ch-standin-")) if run_dir is None else run_dir
    work.mkdir(parents=True, exist_ok=True, mode=0o700)
    users_file = work / "users.xml"
    write_xml(settings.users, users_file, mode=0o600)
    write_xml(build_local_config(settings, users_file), work / "config.xml", mode=0o600)
    fifo = work / STOP_FIFO
    if fifo.exists():
        fifo.unlink()
    os.mkfifo(fifo, 0o600)

    engine = load_engine()
    outcome = _Outcome()
    sql = serving_sql(settings, fifo, databases or [])

    def run() -> None:
        os.chdir(work)  # clickhouse-local reads ./config.xml
        result: _QueryResult = engine.query(sql, "TabSeparated", path=str(data_dir))
        if result.has_error():
            outcome.error = result.error_message().strip()
        outcome.finished = True

    stop_requested = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log(f"received {signal.Signals(signum).name}, stopping")
        stop_requested.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    worker = threading.Thread(target=run, name="clickhouse-engine", daemon=True)
    worker.start()
    if _wait_listening(settings, worker, ready_timeout):
        ports = {"http": settings.http_port, "tcp": settings.tcp_port}
        log(
            f"ready: listen_host={','.join(settings.listen_hosts)} "
            + " ".join(f"{k}={v}" for k, v in ports.items() if v is not None)
            + f" data={data_dir}"
        )
        _sd_notify("READY=1")
    elif worker.is_alive():
        log(f"listeners did not open within {ready_timeout:.0f}s")
        stop_requested.set()

    while worker.is_alive() and not stop_requested.is_set():
        stop_requested.wait(0.5)
    if worker.is_alive():
        _sd_notify("STOPPING=1")
        _release(fifo, worker)
        worker.join()
    fifo.unlink(missing_ok=True)
    if own_run_dir:
        for leftover in work.iterdir():
            leftover.unlink()
        work.rmdir()
    if outcome.error:
        log(f"engine error: {outcome.error}")
        return 1
    if not stop_requested.is_set():
        log("engine stopped without a stop request (its error, if any, is above)")
        return 1
    log("stopped")
    return 0
