"""The dashboard's files and the headers every answer carries."""

from __future__ import annotations

from importlib import resources

TYPES = {"png": "image/png", "svg": "image/svg+xml", "js": "application/javascript", "css": "text/css",
         "html": "text/html; charset=utf-8", "md": "text/markdown; charset=utf-8"}
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
                               " connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def static(name: str) -> bytes | None:
    """A file of the dashboard (``dashboard/static``) or of the vendored scripts, or None."""
    for folder in (resources.files("footprint") / "dashboard" / "static", resources.files("footprint") / "static"
                   / "vendor"):
        path = folder / name
        if path.is_file():
            return path.read_bytes()
    return None
