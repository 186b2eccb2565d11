"""A minimal ClickHouse native-protocol (TCP) client: Hello with credentials, then Ping.

Enough to prove that the native port really serves ClickHouse and authenticates the app's
users (the server checks the password at Hello), without a native driver in the venv.
Protocol revision 54449: before the Hello addendum and chunked packets, which every
server since 2021 still accepts.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

REVISION = 54449
CLIENT_HELLO, CLIENT_PING = 0, 4
SERVER_HELLO, SERVER_EXCEPTION, SERVER_PONG = 0, 2, 4


class NativeError(Exception):
    """The server answered with an Exception packet."""

    def __init__(self, code: int, name: str, message: str) -> None:
        super().__init__(f"Code: {code}. {name}: {message.splitlines()[0] if message else ''}")
        self.code = code
        self.name = name


@dataclass
class ServerHello:
    name: str
    version: tuple[int, int, int]
    revision: int
    timezone: str
    display_name: str


def _varuint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _string(text: str) -> bytes:
    data = text.encode()
    return _varuint(len(data)) + data


class _Reader:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def exactly(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("the server closed the connection mid-packet")
            buf += chunk
        return buf

    def varuint(self) -> int:
        shift = result = 0
        for _ in range(10):
            byte = self.exactly(1)[0]
            result |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return result
            shift += 7
        raise ValueError("malformed VarUInt from the server")

    def string(self) -> str:
        n = self.varuint()
        if n > 1 << 20:
            raise ValueError(f"implausible string length {n} from the server")
        return self.exactly(n).decode()

    def exception(self) -> NativeError:
        code = struct.unpack("<i", self.exactly(4))[0]
        name, message = self.string(), self.string()
        self.string()  # stack trace
        self.exactly(1)  # has_nested
        return NativeError(code, name, message)


def handshake(host: str, port: int, user: str, password: str, database: str = "", timeout: float = 10) -> ServerHello:
    """Hello (authenticated by the server) and a Ping answered by Pong; raises NativeError on refusal."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(
            _varuint(CLIENT_HELLO) + _string("footprint-smoke") + _varuint(1) + _varuint(0) + _varuint(REVISION)
            + _string(database) + _string(user) + _string(password)
        )
        r = _Reader(sock)
        kind = r.varuint()
        if kind == SERVER_EXCEPTION:
            raise r.exception()
        if kind != SERVER_HELLO:
            raise ValueError(f"expected the server's Hello (0), got packet {kind}")
        name = r.string()
        major, minor, revision = r.varuint(), r.varuint(), r.varuint()
        negotiated = min(revision, REVISION)
        timezone = r.string() if negotiated >= 54058 else ""
        display = r.string() if negotiated >= 54372 else ""
        patch = r.varuint() if negotiated >= 54401 else 0
        sock.sendall(_varuint(CLIENT_PING))
        kind = r.varuint()
        if kind == SERVER_EXCEPTION:
            raise r.exception()
        if kind != SERVER_PONG:
            raise ValueError(f"expected Pong (4) after Ping, got packet {kind}")
        return ServerHello(name, (major, minor, patch), revision, timezone, display)
