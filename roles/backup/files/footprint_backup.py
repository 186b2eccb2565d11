#!/usr/bin/python3
"""footprint-backup: back up and restore what this host holds of the Footprint pipeline.

Installed by roles/backup on every Footprint host; run daily by footprint-backup.timer and on demand
by playbooks/backup.yml and playbooks/restore.yml. What a host holds is described by the roles
that put it there, one file each in the config directory (default /etc/footprint/backup.d):
kafka.json, postgresql.json, clickhouse.json; backup.json there says where backups go.

A backup is a *set*, a directory named by its UTC start time (YYYYMMDDTHHMMSSZ) under
<dir>/sets/, with one sub-directory per part and a manifest.json (what, when, versions, sizes,
SHA-256 of every file). Each part is verified after it is written:
  kafka       the cluster id, topics and their configs, ACLs, SCRAM users (names and mechanisms;
              the passwords live on the control node), and every consumer group's committed
              offsets: the point in the topic where a restored store takes over again. Written
              first, so the stores backed up after it hold every event below those offsets.
  postgresql  pg_basebackup (plain format, its WAL streamed in), checked by pg_verifybackup; with
              the WAL archived continuously (the postgresql role's archive_command) a restore
              can reach any point in time after the backup.
  clickhouse  BACKUP DATABASE ... TO File(...), incremental on the newest backup while that chain's
              full backup is younger than clickhouse_full_every_days (backup.json), full otherwise.
Pruning keeps the newest `keep` sets (and the ClickHouse bases they build on) and the archived
WAL the oldest kept PostgreSQL backup needs.

Commands (each prints progress lines, then one JSON document on stdout):
  run [--set NAME] [--parts P,...]   back up the parts this host holds (all by default), verify, prune
  verify [--set NAME]                recompute every checksum of a set (default: the newest)
  list                               the sets on this host, newest last
  add --set NAME --part P FILE       copy FILE into a set (the control node's encrypted secrets)
  prune                              apply the retention now
  restore-postgresql [--set NAME] [--target-time T] [--force] [--check]
  restore-clickhouse [--set NAME] [--force] [--check]
  restore-kafka-offsets [--set NAME] --group G --topic T [--wait-seconds S] | --check
A restore takes the newest set holding its part that is not newer than --set (default: latest);
with --target-time, the newest whose base backup ended before that time. PostgreSQL's replaced
data directory is kept beside it until the restored cluster has recovered; ClickHouse's database
is dropped once the set and its bases are verified, then restored.
A restore refuses a store that holds events (or a PostgreSQL cluster it cannot look into) unless
--force. Only the Python standard library. Exit status: 0 done, 1 failed (the cause and the fix on
stderr), 2 bad arguments.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import datetime
import fcntl
import hashlib
import json
import os
import pwd
import re
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

PROG = "footprint-backup"
FORMAT = 1
CONFIG_DIR = Path("/etc/footprint/backup.d")
PARTS = ("kafka", "postgresql", "clickhouse")  # the order a run takes them in
SET_RE = re.compile(r"^\d{8}T\d{6}Z$")
MANIFEST = "manifest.json"


class Failure(Exception):
    """A step failed; the message names the cause and the fix."""


def log(message: str) -> None:
    print(f"{PROG}: {message}", file=sys.stderr, flush=True)


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)  # noqa: UP017 (Python 3.10: Ubuntu 22.04)


def set_time(name: str) -> datetime.datetime:
    return datetime.datetime.strptime(name, "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.timezone.utc)  # noqa: UP017 (Python 3.10: Ubuntu 22.04)


def run(argv: list[str], *, user: str | None = None, env: dict[str, str] | None = None, timeout: float = 3600,
        what: str = "") -> str:
    """Run a command (as `user` via runuser); its stdout, or Failure with its stderr."""
    cmd = (["runuser", "-u", user, "--"] if user else []) + argv
    res = subprocess.run(cmd, env={**os.environ, **(env or {})}, text=True, capture_output=True,
                         timeout=timeout, check=False)
    if res.returncode != 0:
        detail = (res.stderr.strip() or res.stdout.strip())[-2000:]
        raise Failure(f"{what or argv[0]} failed (exit {res.returncode}): {detail}")
    return res.stdout


# --- configuration ---------------------------------------------------------------------------


class Config:
    """backup.json (where, how many) and one file per part this host holds."""

    def __init__(self, directory: Path) -> None:
        main = directory / "backup.json"
        try:
            self.main: dict[str, Any] = json.loads(main.read_text())
        except (OSError, ValueError) as exc:
            raise Failure(f"cannot read {main}: {exc} (the backup role writes it: run site.yml)") from exc
        self.parts: dict[str, dict[str, Any]] = {}
        for part in PARTS:
            path = directory / f"{part}.json"
            if path.exists():
                try:
                    self.parts[part] = json.loads(path.read_text())
                except ValueError as exc:
                    raise Failure(f"{path}: {exc}") from exc
        self.root = Path(self.main["dir"])
        self.sets = self.root / "sets"
        self.keep = int(self.main.get("keep", 7))
        self.full_every_days = float(self.main.get("clickhouse_full_every_days", 7))
        self.host = str(self.main.get("host", os.uname().nodename))


@contextlib.contextmanager
def locked(root: Path) -> Iterator[None]:
    """One footprint-backup at a time per host (the timer and a playbook may meet)."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"another {PROG} runs on this host; waiting for it")
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield


# --- manifests and checksums -----------------------------------------------------------------


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_table(top: Path, base: Path) -> dict[str, dict[str, Any]]:
    """relative path -> size and SHA-256 of every regular file under `top`."""
    table = {}
    for path in sorted(p for p in top.rglob("*") if p.is_file() and not p.is_symlink()):
        table[str(path.relative_to(base))] = {"size": path.stat().st_size, "sha256": sha256(path)}
    return table


def read_manifest(set_dir: Path) -> dict[str, Any]:
    try:
        manifest: dict[str, Any] = json.loads((set_dir / MANIFEST).read_text())
        return manifest
    except FileNotFoundError:
        return {"format": FORMAT, "set": set_dir.name, "parts": {}}
    except ValueError as exc:
        raise Failure(f"{set_dir / MANIFEST} is damaged ({exc}): this set cannot be trusted; restore another") from exc


def write_manifest(set_dir: Path, manifest: dict[str, Any]) -> None:
    fd, tmp = tempfile.mkstemp(dir=set_dir, prefix=".manifest.")
    with os.fdopen(fd, "w") as handle:
        json.dump(manifest, handle, indent=1, sort_keys=True)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.chmod(tmp, 0o600)
    os.replace(tmp, set_dir / MANIFEST)


def record_part(set_dir: Path, host: str, part: str, entry: dict[str, Any]) -> dict[str, Any]:
    manifest = read_manifest(set_dir)
    manifest.update(format=FORMAT, set=set_dir.name, host=host)
    entry["files"] = file_table(set_dir / part, set_dir)
    entry["bytes"] = sum(f["size"] for f in entry["files"].values())
    manifest["parts"][part] = entry
    write_manifest(set_dir, manifest)
    return entry


def verify_set(set_dir: Path, parts: list[str] | None = None) -> dict[str, Any]:
    """Recompute the checksums of `parts` (all recorded ones by default); Failure on any difference."""
    manifest = read_manifest(set_dir)
    recorded = manifest.get("parts", {})
    wanted = parts if parts is not None else sorted(recorded)
    report: dict[str, Any] = {}
    for part in wanted:
        if part not in recorded:
            raise Failure(f"set {set_dir.name} has no {part} backup on this host (its manifest lists {sorted(recorded)})")
        problems = []
        for rel, want in recorded[part]["files"].items():
            path = set_dir / rel
            if not path.is_file():
                problems.append(f"{rel}: missing")
            elif path.stat().st_size != want["size"] or sha256(path) != want["sha256"]:
                problems.append(f"{rel}: changed since the backup")
        extra = set(file_table(set_dir / part, set_dir)) - set(recorded[part]["files"]) if (set_dir / part).is_dir() else set()
        problems += [f"{rel}: not in the manifest" for rel in sorted(extra)]
        if problems:
            raise Failure(f"set {set_dir.name}, part {part}: {len(problems)} file(s) differ from the manifest, e.g. "
                          + "; ".join(problems[:5]) + ": this copy is damaged; restore another set or another copy")
        seconds = recorded[part].get("seconds")
        summary = f"{part} {recorded[part]['bytes'] / 1e6:.1f} MB" + (f" in {seconds} s" if seconds is not None else "")
        report[part] = {"files": len(recorded[part]["files"]), "bytes": recorded[part]["bytes"], "seconds": seconds,
                        "summary": summary, "ok": True}
    return report


def list_sets(config: Config) -> list[dict[str, Any]]:
    out = []
    if config.sets.is_dir():
        for set_dir in sorted(p for p in config.sets.iterdir() if p.is_dir() and SET_RE.match(p.name)):
            try:
                manifest = read_manifest(set_dir)
            except Failure as exc:
                log(f"skipping set {set_dir.name}: {exc}")
                out.append({"set": set_dir.name, "parts": [], "bytes": 0, "base": None, "damaged": True})
                continue
            parts = manifest.get("parts", {})
            out.append({"set": set_dir.name, "parts": sorted(parts),
                        "bytes": sum(p.get("bytes", 0) for p in parts.values()),
                        "base": parts.get("clickhouse", {}).get("base_set")})
    return out


def set_dir_of(config: Config, name: str | None, part: str) -> Path:
    """The newest set holding `part` that is not newer than `name` (`latest`: the newest)."""
    sets = [s["set"] for s in list_sets(config) if part in s["parts"]]
    wanted = None if name in (None, "", "latest") else str(name)
    if wanted is not None and not SET_RE.match(wanted):
        raise Failure(f"set name {wanted!r}: use YYYYMMDDTHHMMSSZ (UTC) or latest")
    candidates: list[str] = [s for s in sets if wanted is None or s <= wanted]
    if not candidates:
        raise Failure(f"no backup set with {part} in {config.sets}" + (f" from {wanted} or before" if wanted else "")
                      + f" (sets with it: {', '.join(sets) or 'none'}): run `footprint-backup run` (make backup) "
                      "first, or copy the lost host's sets there")
    return config.sets / candidates[-1]


# --- kafka -----------------------------------------------------------------------------------


def kafka_tool(conf: dict[str, Any], script: str, *args: str) -> str:
    argv = [f"{conf['home']}/bin/{script}", "--bootstrap-server", conf["bootstrap"],
            "--command-config", conf["admin_config"], *args]
    if script.startswith("org."):
        argv = [f"{conf['home']}/bin/kafka-run-class.sh", script, *argv[1:]]
    return run(argv, env=conf.get("tool_env", {}), timeout=300, what=f"{script} {' '.join(args)}")


def parse_group_offsets(text: str) -> dict[str, dict[str, dict[str, int]]]:
    """kafka-consumer-groups --describe --offsets: group -> topic -> partition -> committed offset."""
    groups: dict[str, dict[str, dict[str, int]]] = {}
    header: list[str] = []
    for line in text.splitlines():
        cols = line.split()
        if not cols:
            continue
        if cols[0] == "GROUP":
            header = cols
            continue
        if not header or len(cols) < 4:
            continue
        row = dict(zip(header, cols, strict=False))
        offset = row.get("CURRENT-OFFSET", "-")
        if offset.isdigit():
            groups.setdefault(row["GROUP"], {}).setdefault(row["TOPIC"], {})[row["PARTITION"]] = int(offset)
    return groups


def cluster_id(conf: dict[str, Any]) -> str:
    meta = Path(conf["meta_dir"]) / "meta.properties"
    for line in meta.read_text().splitlines():
        if line.startswith("cluster.id="):
            return line.split("=", 1)[1].strip()
    raise Failure(f"{meta} has no cluster.id: is this node formatted?")


def backup_kafka(conf: dict[str, Any], out: Path) -> dict[str, Any]:
    out.mkdir(mode=0o700)
    calls = {
        "topics": ("kafka-topics.sh", "--describe"),
        "topic-configs": ("kafka-configs.sh", "--describe", "--entity-type", "topics"),
        "users": ("kafka-configs.sh", "--describe", "--entity-type", "users"),
        "acls": ("org.apache.kafka.tools.AclCommand", "--list"),
        "groups": ("kafka-consumer-groups.sh", "--describe", "--all-groups", "--offsets"),
    }
    # the committed offsets first (the point the stores' backups must cover), the rest beside it
    groups_text = kafka_tool(conf, *calls.pop("groups"))
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        texts = dict(zip(calls, pool.map(lambda c: kafka_tool(conf, *c), calls.values()), strict=False))
    texts["groups"] = groups_text
    for name, text in texts.items():
        (out / f"{name}.txt").write_text(text)
    metadata = {"cluster_id": cluster_id(conf), "offsets": parse_group_offsets(groups_text),
                "version": conf.get("version", "")}
    (out / "metadata.json").write_text(json.dumps(metadata, indent=1, sort_keys=True) + "\n")
    return {"cluster_id": metadata["cluster_id"], "groups": sorted(metadata["offsets"]),
            "versions": {"kafka": conf.get("version", "")}}


def wait_until_empty(conf: dict[str, Any], group: str, wait_seconds: float) -> None:
    """A stopped consumer with static membership stays a member for its session timeout."""
    deadline = time.monotonic() + wait_seconds
    while True:
        state = kafka_tool(conf, "kafka-consumer-groups.sh", "--describe", "--group", group, "--state")
        if re.search(r"\b(Empty|Dead)\b", state) or "does not exist" in state:
            return
        if time.monotonic() > deadline:
            raise Failure(f"group {group} still has members after {wait_seconds:.0f}s: stop every consumer of it "
                          f"(footprint-consumer on the app hosts) and rerun\n{state.strip()}")
        log(f"group {group} still has members (a stopped static member leaves after its session timeout); waiting")
        time.sleep(1)  # each look is a run of the Kafka tool (~2 s) already


def log_end_offsets(conf: dict[str, Any], topic: str) -> dict[str, int]:
    """partition -> the topic's log-end offset now (kafka-get-offsets prints topic:partition:offset)."""
    text = kafka_tool(conf, "kafka-get-offsets.sh", "--topic", topic)
    ends: dict[str, int] = {}
    for line in text.splitlines():
        fields = line.strip().split(":")  # a topic name holds no ':'
        if len(fields) == 3 and fields[0] == topic and fields[1].isdigit() and fields[2].isdigit():
            ends[fields[1]] = int(fields[2])
    if not ends:
        raise Failure(f"topic {topic} has no partitions on this cluster: converge site.yml first (it creates the topics)")
    return ends


def restore_kafka_offsets(conf: dict[str, Any], set_dir: Path, group: str, topic: str,
                          wait_seconds: float) -> dict[str, Any]:
    """Every partition of `topic` back to the group's offset recorded in the set (0 where it had none: the
    earliest); to the earliest on a cluster or topic that began after the backup."""
    metadata = json.loads((set_dir / "kafka" / "metadata.json").read_text())
    recorded: dict[str, int] = metadata["offsets"].get(group, {}).get(topic, {})
    wait_until_empty(conf, group, wait_seconds)
    ends = log_end_offsets(conf, topic)
    now_id = cluster_id(conf)
    behind = sorted(p for p, offset in recorded.items() if offset > ends.get(p, 0))
    if now_id == metadata["cluster_id"] and not behind:
        rows = [f"{topic},{p},{recorded.get(p, 0)}" for p in sorted(ends, key=int)]
        with tempfile.NamedTemporaryFile("w", suffix=".csv", delete=False) as handle:
            handle.write("\n".join(rows) + "\n")
        try:
            text = kafka_tool(conf, "kafka-consumer-groups.sh", "--reset-offsets", "--group", group,
                              "--from-file", handle.name, "--execute")
        finally:
            os.unlink(handle.name)
        how = (f"to the offsets committed at backup time ({len(recorded)} of {len(ends)} partitions had one; "
               "the others from their earliest offset)")
    else:  # a new cluster or topic: every event in it is newer than the backup
        text = kafka_tool(conf, "kafka-consumer-groups.sh", "--reset-offsets", "--group", group, "--topic", topic,
                          "--to-earliest", "--execute")
        why = (f"this cluster ({now_id}) is not the one backed up ({metadata['cluster_id']})"
               if now_id != metadata["cluster_id"] else f"partitions {', '.join(behind)} end below the recorded offsets")
        how = f"to the earliest offsets: {why}, the topic holds only events newer than the backup"
    log(f"group {group} reset {how}")
    return {"group": group, "topic": topic, "how": how, "recorded": recorded, "log_end": ends,
            "tool_output": text.strip().splitlines()[-20:]}


# --- postgresql ------------------------------------------------------------------------------


def pg_argv(conf: dict[str, Any], tool: str) -> list[str]:
    return [f"{conf['bin_dir']}/{tool}", "-h", conf["socket_dir"], "-p", str(conf["port"])]


def pg_sql(conf: dict[str, Any], sql: str, database: str = "postgres") -> str:
    return run([*pg_argv(conf, "psql"), "-X", "-At", "-v", "ON_ERROR_STOP=1", "-d", database, "-c", sql],
               user="postgres", what="psql").strip()


def pg_running(conf: dict[str, Any]) -> bool:
    res = subprocess.run([*pg_argv(conf, "pg_isready"), "-q", "-t", "3"], check=False)
    return res.returncode == 0


def backup_postgresql(conf: dict[str, Any], out: Path, name: str) -> dict[str, Any]:
    out.mkdir(mode=0o700)
    shutil.chown(out, "postgres", "postgres")
    base = out / "base"
    run([*pg_argv(conf, "pg_basebackup"), "-D", str(base), "-Fp", "-X", "stream", "-c", "fast",
         "-l", f"footprint {name}", "--no-password"],
        user="postgres", what="pg_basebackup")
    run([f"{conf['bin_dir']}/pg_verifybackup", "-q", str(base)], user="postgres", what="pg_verifybackup")
    label = (base / "backup_label").read_text()
    start = re.search(r"START WAL LOCATION: \S+ \(file ([0-9A-F]{24})\)", label)
    version = pg_sql(conf, "SHOW server_version")
    failing = pg_sql(conf, "SELECT coalesce(last_failed_time > coalesce(last_archived_time, 'epoch'), false) "
                           "FROM pg_stat_archiver") == "t"
    if failing:
        log("WARNING: PostgreSQL's WAL archiving fails (pg_stat_archiver; its log says why): this base backup is "
            "complete, but no point after it can be reached until the archive_command works again")
    return {"start_wal_file": start.group(1) if start else "", "wal_archive": conf.get("wal_archive_dir", ""),
            "wal_archiving": "failing" if failing else "ok", "versions": {"postgresql": version},
            "verified_by": "pg_verifybackup"}


def parse_target_time(text: str) -> datetime.datetime:
    """--target-time as an aware datetime (ISO 8601 with an offset, e.g. 2026-12-05 10:00:00+00:00)."""
    try:
        when = datetime.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise Failure(f"--target-time {text!r}: use ISO 8601 with an offset, e.g. '2026-12-05 10:00:00+00:00'") from exc
    if when.tzinfo is None:
        raise Failure(f"--target-time {text!r} has no offset: add one (+00:00 for UTC)")
    return when


def pg_set_before(config: Config, name: str, target: datetime.datetime) -> Path:
    """The newest set (not newer than `name`) whose PostgreSQL backup had ended before `target`."""
    for entry in reversed(list_sets(config)):
        if "postgresql" not in entry["parts"] or (name != "latest" and entry["set"] > name):
            continue
        part = read_manifest(config.sets / entry["set"])["parts"]["postgresql"]
        if set_time(entry["set"]) + datetime.timedelta(seconds=float(part.get("seconds", 0)) + 1) < target:
            return config.sets / str(entry["set"])
    raise Failure(f"no PostgreSQL backup in {config.sets} ended before {target.isoformat()}: "
                  "a point in time can be reached only from a base backup taken before it")


def pg_check(conf: dict[str, Any], force: bool) -> None:
    """Refuse to replace a cluster that holds events (or one that cannot be looked into) unless force."""
    data = Path(conf["data_path"])
    if pg_running(conf):
        db = conf["database"]
        has_db = pg_sql(conf, f"SELECT count(*) FROM pg_database WHERE datname = '{db}'") == "1"
        has_events = has_db and pg_sql(conf, "SELECT to_regclass('public.events') IS NOT NULL", db) == "t" \
            and pg_sql(conf, "SELECT EXISTS (SELECT 1 FROM events)", db) == "t"
        if has_events and not force:
            raise Failure(f"PostgreSQL runs with events in {db}: a restore would replace them. "
                          "Rerun with --force (footprint_restore_force=true) to overwrite it")
    elif (data / "PG_VERSION").exists() and not force:
        raise Failure(f"PostgreSQL is stopped but {data} holds a cluster: a restore would replace it. "
                      "Rerun with --force (footprint_restore_force=true) to overwrite it")


def restore_postgresql(conf: dict[str, Any], set_dir: Path, force: bool, target: datetime.datetime | None) -> dict[str, Any]:
    data = Path(conf["data_path"])
    aside = data.with_name(data.name + ".before-restore")
    base = set_dir / "postgresql" / "base"
    pg_check(conf, force)
    if aside.exists():
        raise Failure(f"{aside} is there: an earlier restore failed and left the data it replaced in it. "
                      f"Move it back to {data} (the service stopped) or remove it, then rerun")
    log(f"stopping {conf['service']}")
    run(["systemctl", "stop", conf["service"]], what=f"systemctl stop {conf['service']}")
    if data.exists():  # kept until the restored cluster has recovered
        data.rename(aside)
    log(f"copying the base backup of set {set_dir.name} into {data}")
    shutil.copytree(base, data, symlinks=True)
    for path in [data, *data.rglob("*")]:
        os.lchown(path, *_ids("postgres"))
    data.chmod(0o700)
    archive = conf.get("wal_archive_dir", "")
    settings = [f"restore_command = 'test -f {archive}/%f.gz && gzip -dc {archive}/%f.gz > %p'"] if archive else []
    if target:  # validated: an aware datetime, printed by Python
        settings += [f"recovery_target_time = '{target.isoformat(' ')}'", "recovery_target_action = 'promote'",
                     # the base backup's timeline: not one a failed earlier attempt may have left in the archive
                     "recovery_target_timeline = 'current'"]
    with open(data / "postgresql.auto.conf", "a") as handle:
        handle.write("\n# footprint-backup restore (removed again once the server has recovered)\n"
                     + "".join(s + "\n" for s in settings))
    (data / "recovery.signal").touch()
    os.lchown(data / "recovery.signal", *_ids("postgres"))
    log(f"starting {conf['service']}: it replays the archived WAL" + (f" up to {target}" if target else ""))
    back = (f"the data it replaced is in {aside}: to go back, stop {conf['service']}, "
            f"replace {data} with it" if aside.exists() else "")
    try:
        run(["systemctl", "start", conf["service"]], what=f"systemctl start {conf['service']}")
        deadline = time.monotonic() + float(conf.get("recovery_timeout", 3600))
        while not (pg_running(conf) and pg_sql(conf, "SELECT pg_is_in_recovery()") == "f"):
            state = subprocess.run(["systemctl", "is-active", conf["service"]], capture_output=True, text=True,
                                   check=False).stdout.strip()
            if state == "failed" or time.monotonic() > deadline:
                raise Failure(f"{conf['service']} did not finish its recovery ({state}): see journalctl -u {conf['service']}")
            time.sleep(1)
    except Failure as exc:
        raise Failure(f"{exc}; {back}" if back else str(exc)) from exc
    for setting in ("restore_command", "recovery_target_time", "recovery_target_action", "recovery_target_timeline"):
        pg_sql(conf, f"ALTER SYSTEM RESET {setting}")
    pg_sql(conf, "SELECT pg_reload_conf()")
    if aside.exists():
        shutil.rmtree(aside)
    return {"data_path": str(data), "target_time": target.isoformat() if target else "the end of the archived WAL",
            "timeline": pg_sql(conf, "SELECT timeline_id FROM pg_control_checkpoint()")}


def _ids(user: str) -> tuple[int, int]:
    entry = pwd.getpwnam(user)
    return entry.pw_uid, entry.pw_gid


def prune_wal(conf: dict[str, Any], oldest_start_wal: str) -> None:
    archive = conf.get("wal_archive_dir", "")
    if archive and oldest_start_wal and Path(archive).is_dir():
        run([f"{conf['bin_dir']}/pg_archivecleanup", "-x", ".gz", archive, oldest_start_wal], user="postgres",
            what="pg_archivecleanup")


# --- clickhouse ------------------------------------------------------------------------------


def ch_query(conf: dict[str, Any], sql: str, timeout: float = 3600) -> str:
    request = urllib.request.Request(conf["url"].rstrip("/") + "/", data=sql.encode(), method="POST", headers={
        "X-ClickHouse-User": conf["user"], "X-ClickHouse-Key": conf["password"]})
    context = ssl.create_default_context(cafile=conf["ca"]) if conf.get("ca") else None
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
            body: bytes = response.read()
            return body.decode().strip()
    except urllib.error.HTTPError as exc:
        raise Failure(f"ClickHouse refused `{sql[:80]}`: HTTP {exc.code}: {exc.read().decode()[:1000].strip()}") from exc
    except OSError as exc:
        raise Failure(f"ClickHouse at {conf['url']} unreachable ({exc}): is {conf.get('service', 'it')} running?") from exc


def quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def clickhouse_base(config: Config, now: datetime.datetime) -> str | None:
    """The newest set with a ClickHouse backup when its chain's full backup is younger than
    full_every_days (the next one builds on it), else None (the next one is full)."""
    names = [s["set"] for s in list_sets(config) if "clickhouse" in s["parts"]]
    if not names:
        return None
    full = clickhouse_chain(config, names[-1])[-1]
    return names[-1] if (now - set_time(full)).total_seconds() < config.full_every_days * 86400 else None


def backup_clickhouse(conf: dict[str, Any], config: Config, out: Path, now: datetime.datetime) -> dict[str, Any]:
    out.mkdir(mode=0o700)
    shutil.chown(out, conf["os_user"], conf["os_user"])
    base = clickhouse_base(config, now)
    target = out / "db"
    sql = f"BACKUP DATABASE {conf['database']} TO File({quote(str(target))})"
    if base:
        sql += f" SETTINGS base_backup = File({quote(str(config.sets / base / 'clickhouse' / 'db'))})"
    status = ch_query(conf, sql + " FORMAT TSV")
    if "BACKUP_CREATED" not in status:
        raise Failure(f"ClickHouse answered {status!r} to BACKUP (expected BACKUP_CREATED)")
    return {"base_set": base, "kind": "incremental" if base else "full",
            "versions": {"clickhouse": ch_query(conf, "SELECT version()")}}


def clickhouse_chain(config: Config, name: str) -> list[str]:
    chain = [name]
    while True:
        base = read_manifest(config.sets / chain[-1]).get("parts", {}).get("clickhouse", {}).get("base_set")
        if not base:
            return chain
        chain.append(base)


def ch_check(conf: dict[str, Any], force: bool) -> bool:
    """Refuse to replace a database that holds events unless force; whether the database exists."""
    db = conf["database"]
    exists = ch_query(conf, f"EXISTS DATABASE {db}") == "1"
    if exists and ch_query(conf, f"EXISTS TABLE {db}.events") == "1":
        rows = int(ch_query(conf, f"SELECT count() FROM {db}.events") or 0)
        if rows and not force:
            raise Failure(f"ClickHouse holds {rows} events in {db}: a restore would replace them. "
                          "Rerun with --force (footprint_restore_force=true) to overwrite it")
    return exists


def restore_clickhouse(conf: dict[str, Any], config: Config, set_dir: Path, force: bool) -> dict[str, Any]:
    db = conf["database"]
    exists = ch_check(conf, force)
    chain = clickhouse_chain(config, set_dir.name)
    for name in chain[1:]:  # the bases an incremental backup reads from
        verify_set(config.sets / name, ["clickhouse"])
    if exists:
        ch_query(conf, f"DROP DATABASE {db} SYNC")
    status = ch_query(conf, f"RESTORE DATABASE {db} FROM File({quote(str(set_dir / 'clickhouse' / 'db'))}) FORMAT TSV")
    if "RESTORED" not in status:
        raise Failure(f"ClickHouse answered {status!r} to RESTORE (expected RESTORED)")
    return {"database": db, "chain": chain, "events": int(ch_query(conf, f"SELECT count() FROM {db}.events") or 0)}


# --- commands --------------------------------------------------------------------------------


def prune(config: Config) -> dict[str, Any]:
    sets = list_sets(config)
    keep = {s["set"] for s in sets[-config.keep:]} if config.keep > 0 else {s["set"] for s in sets}
    for name in list(keep):
        keep.update(clickhouse_chain(config, name))
    removed = [s["set"] for s in sets if s["set"] not in keep]
    for name in removed:
        shutil.rmtree(config.sets / name)
        log(f"pruned set {name} (keep {config.keep})")
    pg = config.parts.get("postgresql")
    if pg:
        starts = [read_manifest(config.sets / s["set"])["parts"]["postgresql"].get("start_wal_file", "")
                  for s in sets if s["set"] in keep and "postgresql" in s["parts"]]
        starts = [s for s in starts if s]
        if starts:
            prune_wal(pg, min(starts, key=lambda w: (w[8:], w[:8])))
    return {"removed": removed, "kept": sorted(keep)}


def cmd_run(config: Config, args: argparse.Namespace) -> dict[str, Any]:
    wanted = [p for p in PARTS if p in (args.parts.split(",") if args.parts else PARTS) and p in config.parts]
    unknown = set(args.parts.split(",") if args.parts else []) - set(PARTS)
    if unknown:
        raise Failure(f"unknown part(s) {', '.join(sorted(unknown))}: choose from {', '.join(PARTS)}")
    now = utcnow()
    name = args.set or now.strftime("%Y%m%dT%H%M%SZ")
    if not SET_RE.match(name):
        raise Failure(f"set name {name!r}: use YYYYMMDDTHHMMSSZ (UTC)")
    set_dir = config.sets / name
    set_dir.mkdir(parents=True, exist_ok=True, mode=0o711)
    report: dict[str, Any] = {"set": name, "host": config.host, "dir": str(set_dir), "parts": {}}
    for part in wanted:  # a lost disk must not take the backups with the data
        data = config.parts[part].get("data_path") or config.parts[part].get("meta_dir")
        if data and Path(data).exists() and Path(data).stat().st_dev == config.root.stat().st_dev:
            log(f"WARNING: {config.root} is on the same filesystem as {part}'s data ({data}): a lost disk takes "
                "the backups with it. Mount another disk or a backup host's share there (footprint_backup_dir)")
    for part in wanted:
        if (set_dir / part).exists():
            raise Failure(f"set {name} already has a {part} backup on this host: choose another set name")
        started = time.monotonic()
        log(f"set {name}: backing up {part}")
        try:
            if part == "kafka":
                entry = backup_kafka(config.parts[part], set_dir / part)
            elif part == "postgresql":
                entry = backup_postgresql(config.parts[part], set_dir / part, name)
            else:
                entry = backup_clickhouse(config.parts[part], config, set_dir / part, now)
        except BaseException:
            shutil.rmtree(set_dir / part, ignore_errors=True)  # no half-written part is ever taken for one
            raise
        entry.update(started=now.isoformat(), seconds=round(time.monotonic() - started, 2))
        entry = record_part(set_dir, config.host, part, entry)
        verify_set(set_dir, [part])
        log(f"set {name}: {part} done in {entry['seconds']} s, {entry['bytes']} bytes in {len(entry['files'])} files, verified")
        report["parts"][part] = {k: v for k, v in entry.items() if k != "files"}
    if not wanted:
        log(f"this host holds none of the parts asked for ({args.parts or 'all'}): nothing to back up")
    report["prune"] = prune(config)
    return report


def write_metrics(config: Config, ok: bool, report: dict[str, Any] | None) -> None:
    """The run's outcome for node-exporter's textfile collector (backup.json's textfile_dir, if set).

    A failed run keeps the time of the last good one (read back from the file it replaces)."""
    directory = config.main.get("textfile_dir")
    if not directory or not Path(directory).is_dir():
        return
    path = Path(directory) / "footprint_backup.prom"
    now = time.time()
    last_ok = now if ok else 0.0
    if not ok and path.exists():
        found = re.search(r"^footprint_backup_last_success_timestamp_seconds (\S+)$", path.read_text(), re.M)
        last_ok = float(found.group(1)) if found else 0.0
    size = sum(int(part.get("bytes", 0)) for part in (report or {}).get("parts", {}).values())
    metrics = [
        ("footprint_backup_last_run_timestamp_seconds", "When footprint-backup run last ended, seconds since the epoch.", now),
        ("footprint_backup_last_run_ok", "1 when the last run backed up and verified every part, else 0.", 1 if ok else 0),
        ("footprint_backup_last_success_timestamp_seconds",
         "When the last good run ended, seconds since the epoch (0: none since the metrics began).", last_ok),
        ("footprint_backup_last_run_bytes", "Bytes the last run wrote (0 when it failed).", size if ok else 0),
        ("footprint_backup_sets", "Sets kept on this host.", len(list_sets(config)) if config.sets.is_dir() else 0),
    ]
    text = "".join(f"# HELP {name} {help_}\n# TYPE {name} gauge\n{name} {round(value, 3)}\n" for name, help_, value in metrics)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.chmod(0o644)
    tmp.replace(path)


def cmd_add(config: Config, args: argparse.Namespace) -> dict[str, Any]:
    if not SET_RE.match(args.set) or args.part in PARTS or not re.match(r"^[a-z][a-z0-9-]*$", args.part):
        raise Failure(f"add: a set name YYYYMMDDTHHMMSSZ and a part other than {', '.join(PARTS)} (got {args.set}, {args.part})")
    set_dir = config.sets / args.set
    (set_dir / args.part).mkdir(parents=True, exist_ok=True, mode=0o700)
    shutil.copyfile(args.file, set_dir / args.part / args.file.name)
    os.chmod(set_dir / args.part / args.file.name, 0o600)
    entry = record_part(set_dir, config.host, args.part, {"started": utcnow().isoformat()})
    verify_set(set_dir, [args.part])
    return {"set": args.set, "part": args.part, "bytes": entry["bytes"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-dir", type=Path, default=CONFIG_DIR, help=f"default {CONFIG_DIR}")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="back up this host's parts, verify them, prune")
    p.add_argument("--set", help="set name YYYYMMDDTHHMMSSZ (default: now, UTC)")
    p.add_argument("--parts", help=f"comma-separated subset of {','.join(PARTS)} (default: all this host holds)")
    p = sub.add_parser("verify", help="recompute the checksums of a set")
    p.add_argument("--set", default="latest")
    p = sub.add_parser("add", help="copy a file into a set as (part of) a part, recorded and verified")
    p.add_argument("--set", required=True)
    p.add_argument("--part", required=True, help="e.g. control (the control node's encrypted secrets)")
    p.add_argument("file", type=Path)
    sub.add_parser("list", help="the sets on this host")
    sub.add_parser("prune", help="apply the retention now")
    for part in ("postgresql", "clickhouse"):
        p = sub.add_parser(f"restore-{part}", help=f"replace {part}'s data with a set's")
        p.add_argument("--set", default="latest")
        p.add_argument("--force", action="store_true", help="overwrite a store that holds events")
        p.add_argument("--check", action="store_true", help="only say whether the restore would be refused")
        if part == "postgresql":
            p.add_argument("--target-time", default="",
                           help="recover up to this time, ISO 8601 with an offset (default: all archived WAL); "
                                "the set: the newest whose backup ended before it")
    p = sub.add_parser("restore-kafka-offsets", help="set a group's committed offsets to the set's")
    p.add_argument("--set", default="latest")
    p.add_argument("--group", help="the consumer group (required unless --check)")
    p.add_argument("--topic", help="the events topic the group reads (required unless --check)")
    p.add_argument("--wait-seconds", type=float, default=120.0, help="for the group's members to leave (default 120)")
    p.add_argument("--check", action="store_true", help="only find and verify the set")
    args = parser.parse_args(argv)
    if args.command == "restore-kafka-offsets" and not args.check and not (args.group and args.topic):
        parser.error("restore-kafka-offsets needs --group and --topic (or --check)")
    try:
        config = Config(args.config_dir)
        with locked(config.root):
            result: Any
            if args.command == "run":
                try:
                    result = cmd_run(config, args)
                except BaseException:
                    write_metrics(config, False, None)
                    raise
                write_metrics(config, True, result)
            elif args.command == "verify":
                names = [entry["set"] for entry in list_sets(config)]
                if not names or (args.set != "latest" and args.set not in names):
                    raise Failure(f"no set {args.set} in {config.sets} (there: {', '.join(names) or 'none'})")
                set_dir = config.sets / (names[-1] if args.set == "latest" else args.set)
                result = {"set": set_dir.name, "parts": verify_set(set_dir)}
            elif args.command == "add":
                result = cmd_add(config, args)
            elif args.command == "list":
                result = list_sets(config)
            elif args.command == "prune":
                result = prune(config)
            else:
                part = args.command.removeprefix("restore-").removesuffix("-offsets")
                if part not in config.parts:
                    raise Failure(f"this host holds no {part} (no {args.config_dir}/{part}.json): run it on the {part} host")
                target = parse_target_time(args.target_time) if getattr(args, "target_time", "") else None
                set_dir = pg_set_before(config, args.set, target) if target else set_dir_of(config, args.set, part)
                verify_set(set_dir, [part])
                started = time.monotonic()
                if args.check:  # the set is there and verified; a store would not be refused
                    if part != "kafka":
                        (pg_check if part == "postgresql" else ch_check)(config.parts[part], args.force)
                    result = {"checked": True}
                elif part == "postgresql":
                    result = restore_postgresql(config.parts[part], set_dir, args.force, target)
                elif part == "clickhouse":
                    result = restore_clickhouse(config.parts[part], config, set_dir, args.force)
                else:
                    result = restore_kafka_offsets(config.parts[part], set_dir, args.group, args.topic, args.wait_seconds)
                result.update(set=set_dir.name, seconds=round(time.monotonic() - started, 2))
    except Failure as exc:
        log(f"error: {exc}")
        return 1
    print(json.dumps(result, indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
