"""Keys and signatures: bearer keys compared in constant time, and HMAC-signed tokens.

Two kinds of keys, kept apart in the settings: public keys (``FOOTPRINT_API_KEYS``) may only send
events; private keys (``FOOTPRINT_PRIVATE_KEYS``) read, query, erase and log in to the dashboard.
A key is never both (``Settings`` refuses that). Tokens the server hands out (the events cursor,
the dashboard session) are signed with a key derived from the private secrets, so a token made
anywhere else, or changed, is refused.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Iterable

from pydantic import SecretStr

from footprint.settings import Settings


def key_bytes(keys: Iterable[SecretStr]) -> list[bytes]:
    return [k.get_secret_value().encode() for k in keys]


def matches(given: str, keys: list[bytes]) -> bool:
    """``given`` equals one of ``keys``; every key is compared (no early exit, constant time each)."""
    if not given or not keys:
        return False
    raw = given.encode("utf-8", "replace")
    ok = False
    for key in keys:
        ok |= hmac.compare_digest(raw, key)
    return ok


def bearer(header: str | None) -> str:
    """The token of an ``Authorization: Bearer TOKEN`` header, or ""."""
    if not header:
        return ""
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def authorized(header: str | None, keys: list[bytes]) -> bool:
    return matches(bearer(header), keys)


class Signer:
    """Signs short payloads (``payload.signature``, URL-safe) with a key only this deployment has."""

    def __init__(self, secret: bytes, purpose: str) -> None:
        self._key = hmac.new(secret, purpose.encode(), hashlib.sha256).digest()

    @classmethod
    def from_settings(cls, settings: Settings, purpose: str) -> Signer:
        material = b"\x00".join(sorted(
            [*key_bytes(settings.private_keys), settings.dashboard_password.get_secret_value().encode()]))
        return cls(hashlib.sha256(b"footprint-signing\x00" + material).digest(), purpose)

    def sign(self, payload: bytes) -> str:
        mac = hmac.new(self._key, payload, hashlib.sha256).digest()[:20]
        return f"{_b64(payload)}.{_b64(mac)}"

    def verify(self, token: str) -> bytes | None:
        """The payload of a token this signer made, or None (malformed, forged or changed)."""
        body, dot, mac = token.partition(".")
        if not dot or len(token) > 4096:
            return None
        try:
            payload = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
            given = base64.urlsafe_b64decode(mac + "=" * (-len(mac) % 4))
        except ValueError:
            return None
        if _b64(payload) != body or _b64(given) != mac:  # one spelling only (no unused bits, no padding)
            return None
        expected = hmac.new(self._key, payload, hashlib.sha256).digest()[:20]
        return payload if hmac.compare_digest(given, expected) else None

    def sign_expiring(self, payload: str, seconds: float) -> str:
        return self.sign(f"{int(time.time() + seconds)}|{payload}".encode())

    def verify_expiring(self, token: str) -> str | None:
        raw = self.verify(token)
        if raw is None:
            return None
        expires, _, payload = raw.decode("utf-8", "replace").partition("|")
        if not expires.isdigit() or int(expires) < time.time():
            return None
        return payload


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
