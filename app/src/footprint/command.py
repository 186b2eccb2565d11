"""The ``footprint`` console script: the CLI, or a clear word when the server extra is missing.

``pip install footprint`` alone is the middleware for a site's own app (``footprint.track``); the
commands (serve, consume, stats, ...) need ``pip install 'footprint[server]'``.
"""

from __future__ import annotations

import sys


def main() -> int:
    try:
        from footprint.cli import main as cli
    except ModuleNotFoundError as exc:
        print(f"footprint: the commands need the server extra (module {exc.name!r} is missing):"
              " pip install 'footprint[server]'", file=sys.stderr)
        return 2
    return cli()
