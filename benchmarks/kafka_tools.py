"""CPU of one Kafka command-line tool call, with the JVM options the kafka role gives its tools.

The kafka role runs ~15 Kafka tools per host and converge (the quorum, topics, ACLs, SCRAM users,
configs), each a new JVM. This starts a throwaway broker from the test bed's distribution and
times the same admin call (`kafka-configs.sh --describe`, `kafka-metadata-quorum.sh describe`)
with three option sets, side by side in one run:

    server   kafka-run-class.sh's own default (G1, C2, no archive): what the tools ran with before
    c1       the role's __kafka_tool_jvm: the C1 compiler only, the serial collector
    c1+cds   the role's whole __kafka_tool_env: c1 and a class-data archive written once by a
             first call (-XX:ArchiveClassesAtExit), then mapped (-XX:SharedArchiveFile)

It prints each set's median wall seconds and CPU seconds (user + system of the JVM) and the CPU
ratio to `server`. The options are read from roles/kafka/vars/main.yml, not copied here.

    .venv/bin/python benchmarks/kafka_tools.py [--calls N]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml  # type: ignore[import-untyped]

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "testbed" / "kafka-dist"))
sys.path.insert(0, str(REPO / "app" / "tests"))

from kafka_local import LocalKafka, ensure_tarball  # noqa: E402
from services import free_port  # noqa: E402

CALLS = {
    "kafka-configs.sh": ["--describe", "--entity-type", "brokers", "--entity-default"],
    "kafka-metadata-quorum.sh": ["describe", "--status"],
}


def role_tool_jvm() -> str:
    """The role's tool options (vars/main.yml's __kafka_tool_jvm)."""
    data = yaml.safe_load((REPO / "roles" / "kafka" / "vars" / "main.yml").read_text())
    return str(data["__kafka_tool_jvm"])


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the child) of one call, which must succeed."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    res = subprocess.run(cmd, env=env, text=True, capture_output=True, timeout=120)
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if res.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed ({res.returncode}): {res.stderr[-1000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=7, help="calls per tool and option set (default 7)")
    args = parser.parse_args()
    jvm = role_tool_jvm()
    with tempfile.TemporaryDirectory(prefix="fp-bench-tools-") as tmp:
        broker = LocalKafka(Path(tmp) / "kafka", port=free_port(), controller_port=free_port(),
                            tarball=ensure_tarball()).start()
        try:
            home = Path(broker.home_file.read_text().strip())
            archive = Path(tmp) / "tools.jsa"
            sets = {
                "server": {},
                "c1": {"KAFKA_JVM_PERFORMANCE_OPTS": jvm},
                "c1+cds": {"KAFKA_JVM_PERFORMANCE_OPTS": f"{jvm} -XX:SharedArchiveFile={archive} -Xshare:auto"},
            }
            base = dict(os.environ, KAFKA_HEAP_OPTS="-Xmx256m", LOG_DIR=str(Path(tmp) / "logs"))
            first = [str(home / "bin" / "kafka-metadata-quorum.sh"), "--bootstrap-server", broker.bootstrap,
                     *CALLS["kafka-metadata-quorum.sh"]]
            timed(first, base | {"KAFKA_JVM_PERFORMANCE_OPTS": f"{jvm} -XX:ArchiveClassesAtExit={archive}"})
            print(f"broker {broker.bootstrap}; archive {archive.stat().st_size / 1e6:.0f} MB; {args.calls} calls each; "
                  f"load average {os.getloadavg()[0]:.2f}; {os.cpu_count()} CPUs")
            print(f"{'tool':26} {'options':8} {'wall s':>7} {'CPU s':>7} {'CPU vs server':>14}")
            for tool, tool_args in CALLS.items():
                cmd = [str(home / "bin" / tool), "--bootstrap-server", broker.bootstrap, *tool_args]
                cpu_server = 0.0
                for name, extra in sets.items():
                    runs = [timed(cmd, base | extra) for _ in range(args.calls)]
                    wall = statistics.median(r[0] for r in runs)
                    cpu = statistics.median(r[1] for r in runs)
                    cpu_server = cpu_server or cpu
                    print(f"{tool:26} {name:8} {wall:7.2f} {cpu:7.2f} {cpu / cpu_server:13.2f}x")
        finally:
            broker.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
