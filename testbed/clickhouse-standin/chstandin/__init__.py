"""ClickHouse stand-in: TEST INFRASTRUCTURE, not a way to install ClickHouse.

It serves the real ClickHouse engine shipped in the PyPI wheel ``chdb-core``
over HTTP and the native TCP protocol, configured from a clickhouse-server
style configuration directory (config.xml + config.d, users.xml + users.d).
"""

from chstandin.config import (
    ConfigError,
    ServerSettings,
    build_local_config,
    load_merged_xml,
    read_server_settings,
    write_init_config,
)
from chstandin.fixture import StandIn, StandInUser, free_port

__all__ = [
    "ConfigError",
    "ServerSettings",
    "StandIn",
    "StandInUser",
    "build_local_config",
    "free_port",
    "load_merged_xml",
    "read_server_settings",
    "write_init_config",
]
