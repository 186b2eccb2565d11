#!/usr/bin/env python3
"""ClickHouse stand-in CLI (test infrastructure, see README.md)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from chstandin.config import ConfigError, UserSpec, write_init_config


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="standin.py",
        description="Serve the ClickHouse engine from chdb-core over HTTP and native TCP "
        "(test infrastructure, not a ClickHouse install method).",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="serve a clickhouse-server config dir (foreground)")
    serve.add_argument(
        "--config-dir",
        type=Path,
        required=True,
        help="dir with config.xml, config.d/, users.xml, users.d/",
    )
    serve.add_argument(
        "--data-dir",
        type=Path,
        required=True,
        help="ClickHouse data path (kept across restarts)",
    )
    serve.add_argument(
        "--run-dir",
        type=Path,
        default=None,
        help="where the merged files and stop FIFO go (default: a temp dir)",
    )
    serve.add_argument(
        "--create-database",
        action="append",
        default=[],
        metavar="NAME",
        help="CREATE DATABASE IF NOT EXISTS NAME before listening (repeatable)",
    )
    serve.add_argument("--ready-timeout", type=float, default=120.0)

    init = sub.add_parser("init-config", help="write a config dir for a throwaway instance")
    init.add_argument("config_dir", type=Path)
    init.add_argument("--http-port", type=int, required=True)
    init.add_argument("--tcp-port", type=int, required=True)
    init.add_argument(
        "--listen-host",
        action="append",
        default=None,
        help="listen address (repeatable, default 127.0.0.1)",
    )
    init.add_argument(
        "--user",
        action="append",
        default=[],
        metavar="NAME:PASSWORD:GRANTS",
        help="e.g. 'footprint_writer:secret:INSERT, SELECT ON footprint.*' (several grants separated by ';')",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "init-config":
            users = [UserSpec.parse(text) for text in args.user]
            hosts = tuple(args.listen_host or ["127.0.0.1"])
            write_init_config(args.config_dir, args.http_port, args.tcp_port, users, hosts)
            return 0
        from chstandin.engine import serve

        return serve(
            args.config_dir.resolve(),
            args.data_dir.resolve(),
            args.run_dir.resolve() if args.run_dir else None,
            args.create_database,
            args.ready_timeout,
        )
    except ConfigError as exc:
        print(f"clickhouse-standin: configuration error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # Leave without running the engine's global destructors; they are not needed
    # once the serving query has returned and can stall interpreter shutdown.
    os._exit(code)
