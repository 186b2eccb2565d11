"""Read a clickhouse-server configuration directory the way the server does.

clickhouse-server merges ``config.xml`` with ``config.d/*.xml`` and
``users.xml`` with ``users.d/*.xml``; clickhouse-local (what chdb runs) only
reads one ``config.xml`` from its working directory and does not merge.
This module does the merge and writes the single files clickhouse-local reads.
"""

from __future__ import annotations

import copy
import hashlib
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

ROOT_TAGS = ("clickhouse", "yandex")
DEFAULT_LISTEN_HOSTS = ("::1", "127.0.0.1")
# Top-level server settings copied from the merged server config into the
# clickhouse-local config (everything else is ignored, see README).
CARRIED_SETTINGS = (
    "listen_try",
    "listen_reuse_port",
    "max_server_memory_usage",
    "max_server_memory_usage_to_ram_ratio",
    "max_concurrent_queries",
    "mark_cache_size",
    "uncompressed_cache_size",
    "timezone",
    "access_control_improvements",
    # BACKUP/RESTORE ... File(path): the directories the server may write backups to
    "backups",
    # a cluster (the clickhouse role with several hosts): remote(), cluster() and Distributed
    # tables work across stand-in processes; zookeeper, keeper_server and the interserver
    # settings are NOT carried: the engine cannot replicate (README "Several hosts")
    "remote_servers",
    "macros",
    # e.g. the clickhouse role's Prometheus endpoint (/metrics on the HTTP port), served by the engine
    "http_handlers",
)
# Listeners of clickhouse-server that the stand-in never opens.
UNSERVED_PORTS = (
    "https_port",
    "tcp_port_secure",
    "mysql_port",
    "postgresql_port",
    "interserver_http_port",
    "interserver_https_port",
    "grpc_port",
    "prometheus/port",
)
PASSWORD_TAGS = (
    "password",
    "password_sha256_hex",
    "password_double_sha1_hex",
    "bcrypt_password",
    "ssh_keys",
    "ldap",
    "kerberos",
)


class ConfigError(Exception):
    """The configuration directory cannot be served by the stand-in."""


def _parse(path: Path) -> ET.Element:
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as exc:
        raise ConfigError(f"{path}: cannot read XML: {exc}") from exc
    if root.tag not in ROOT_TAGS:
        raise ConfigError(f"{path}: root element is <{root.tag}>, expected <clickhouse>")
    return root


def _flag(elem: ET.Element, name: str) -> bool:
    # clickhouse-server acts on the attribute being present, whatever its value
    return name in elem.attrib


def merge_into(base: ET.Element, override: ET.Element) -> None:
    """Merge ``override`` into ``base`` like clickhouse-server's config processor.

    An override element is paired with the first not yet paired element of the
    same tag; ``remove`` deletes it, ``replace`` swaps it, otherwise leaves
    take the override's text and inner elements merge recursively.  Elements
    without a partner are appended.
    """
    used: set[int] = set()
    for child in list(override):
        if not isinstance(child.tag, str):  # comments, processing instructions
            continue
        partner = next((e for e in base if e.tag == child.tag and id(e) not in used), None)
        if partner is not None:
            used.add(id(partner))
        if _flag(child, "remove"):
            if partner is not None:
                base.remove(partner)
            continue
        clean = copy.deepcopy(child)
        _strip_merge_attributes(clean)
        if partner is None:
            base.append(clean)
            used.add(id(clean))
        elif _flag(child, "replace") or len(partner) == 0:
            index = list(base).index(partner)
            base.remove(partner)
            base.insert(index, clean)
            used.add(id(clean))
        elif len(child) == 0:
            # an empty override of a section leaves its content; text, if any, is set
            partner.attrib.update(clean.attrib)
            if (child.text or "").strip():
                partner.text = child.text
        else:
            partner.attrib.update(clean.attrib)
            merge_into(partner, child)


def _strip_merge_attributes(elem: ET.Element) -> None:
    for node in elem.iter():
        node.attrib.pop("replace", None)
        node.attrib.pop("remove", None)


def load_merged_xml(main: Path, overrides: Path) -> ET.Element:
    """Return ``main`` merged with every ``*.xml`` in ``overrides`` (sorted by name)."""
    if not main.is_file():
        raise ConfigError(f"{main}: file not found")
    root = _parse(main)
    _strip_merge_attributes(root)
    if overrides.is_dir():
        for path in sorted(overrides.glob("*.xml")):
            merge_into(root, _parse(path))
    root.tag = "clickhouse"
    return root


@dataclass(frozen=True)
class ServerSettings:
    """What the stand-in takes from the merged server configuration."""

    listen_hosts: tuple[str, ...]
    http_port: int | None
    tcp_port: int | None
    carried: tuple[ET.Element, ...] = ()
    unserved: tuple[str, ...] = ()
    users: ET.Element = field(default_factory=lambda: ET.Element("clickhouse"))

    def probe_address(self) -> str:
        """An address a local client can use to reach the listeners."""
        host = self.listen_hosts[0]
        if host == "0.0.0.0":
            return "127.0.0.1"
        if host == "::":
            return "::1"
        return host


def _port(root: ET.Element, name: str) -> int | None:
    elem = root.find(name)
    if elem is None or not (elem.text or "").strip():
        return None
    text = (elem.text or "").strip()
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ConfigError(f"<{name}> must be a TCP port number, got {text!r}")
    return int(text)


def _check_default_user(users: ET.Element) -> None:
    default = users.find("users/default")
    if default is None:
        raise ConfigError("users: no <default> user; the stand-in runs its own query as 'default'")
    for tag in PASSWORD_TAGS:
        elem = default.find(tag)
        if elem is not None and ((elem.text or "").strip() or len(elem)):
            raise ConfigError(
                "users: the stand-in needs user 'default' without a password "
                f"(found <{tag}>); restrict it with <networks> instead"
            )


def read_server_settings(config_dir: Path) -> ServerSettings:
    """Merge and validate ``config_dir`` (config.xml, config.d, users.xml, users.d)."""
    config = load_merged_xml(config_dir / "config.xml", config_dir / "config.d")
    users = load_merged_xml(config_dir / "users.xml", config_dir / "users.d")
    _check_default_user(users)
    hosts = tuple((e.text or "").strip() for e in config.findall("listen_host") if (e.text or "").strip())
    http_port = _port(config, "http_port")
    tcp_port = _port(config, "tcp_port")
    if http_port is None and tcp_port is None:
        raise ConfigError("config: neither <http_port> nor <tcp_port> is set")
    carried = tuple(copy.deepcopy(e) for name in CARRIED_SETTINGS if (e := config.find(name)) is not None)
    unserved = tuple(name for name in UNSERVED_PORTS if _port(config, name) is not None)
    return ServerSettings(
        listen_hosts=hosts or DEFAULT_LISTEN_HOSTS,
        http_port=http_port,
        tcp_port=tcp_port,
        carried=carried,
        unserved=unserved,
        users=users,
    )


def build_local_config(settings: ServerSettings, users_file: Path) -> ET.Element:
    """The single config.xml clickhouse-local reads from its working directory."""
    root = ET.Element("clickhouse")
    for host in settings.listen_hosts:
        ET.SubElement(root, "listen_host").text = host
    if settings.http_port is not None:
        ET.SubElement(root, "http_port").text = str(settings.http_port)
    if settings.tcp_port is not None:
        ET.SubElement(root, "tcp_port").text = str(settings.tcp_port)
    ET.SubElement(root, "users_config").text = str(users_file)
    root.extend(copy.deepcopy(e) for e in settings.carried)
    return root


def write_xml(root: ET.Element, path: Path, mode: int = 0o640) -> None:
    """Write ``root`` to ``path`` (indented, UTF-8) with ``mode``."""
    tree = ET.ElementTree(copy.deepcopy(root))
    ET.indent(tree)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tree.write(tmp, encoding="utf-8", xml_declaration=True)
    tmp.chmod(mode)
    tmp.replace(path)


@dataclass(frozen=True)
class UserSpec:
    """A user for :func:`write_init_config`; grants are SQL ``GRANT`` statements."""

    name: str
    password: str
    grants: tuple[str, ...]
    networks: tuple[str, ...] = ("::/0",)

    @classmethod
    def parse(cls, text: str) -> UserSpec:
        """Parse ``NAME:PASSWORD:GRANTS`` where GRANTS is ``;``-separated privileges.

        ``footprint_writer:pw:INSERT, SELECT ON footprint.*`` gives
        ``GRANT INSERT, SELECT ON footprint.* TO footprint_writer``-like grants.
        """
        name, sep1, rest = text.partition(":")
        password, sep2, grants = rest.partition(":")
        if not (sep1 and sep2 and name and password):
            raise ConfigError(f"--user wants NAME:PASSWORD:GRANTS, got {text!r}")
        items = tuple(g.strip() for g in grants.split(";") if g.strip())
        return cls(name, password, tuple(_grant_sql(g) for g in items))


def _grant_sql(grant: str) -> str:
    return grant if grant.upper().startswith("GRANT ") else f"GRANT {grant}"


def write_init_config(
    config_dir: Path,
    http_port: int,
    tcp_port: int,
    users: list[UserSpec],
    listen_hosts: tuple[str, ...] = ("127.0.0.1",),
) -> None:
    """Write a clickhouse-server style configuration directory for a throwaway instance.

    Base files plus ``config.d``/``users.d`` overrides, so serving it exercises
    the same merge as the role's output.
    """
    base = ET.Element("clickhouse")
    ET.SubElement(base, "http_port").text = "8123"
    ET.SubElement(base, "tcp_port").text = "9000"
    write_xml(base, config_dir / "config.xml")

    listen = ET.Element("clickhouse")
    for host in listen_hosts:
        ET.SubElement(listen, "listen_host").text = host
    ET.SubElement(listen, "http_port").text = str(http_port)
    ET.SubElement(listen, "tcp_port").text = str(tcp_port)
    write_xml(listen, config_dir / "config.d" / "standin-listen.xml")

    users_base = ET.fromstring(
        "<clickhouse><profiles><default/></profiles><quotas><default/></quotas>"
        "<users><default><password/><networks><ip>127.0.0.1</ip><ip>::1</ip></networks>"
        "<profile>default</profile><quota>default</quota></default></users></clickhouse>"
    )
    write_xml(users_base, config_dir / "users.xml")

    extra = ET.Element("clickhouse")
    section = ET.SubElement(extra, "users")
    for spec in users:
        user = ET.SubElement(section, spec.name)
        digest = hashlib.sha256(spec.password.encode()).hexdigest()
        ET.SubElement(user, "password_sha256_hex").text = digest
        networks = ET.SubElement(user, "networks")
        for net in spec.networks:
            ET.SubElement(networks, "ip").text = net
        ET.SubElement(user, "profile").text = "default"
        ET.SubElement(user, "quota").text = "default"
        grants = ET.SubElement(user, "grants")
        for grant in spec.grants:
            ET.SubElement(grants, "query").text = grant
    write_xml(extra, config_dir / "users.d" / "standin-users.xml", mode=0o600)
