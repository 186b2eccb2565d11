#!/usr/bin/env python3
"""Build the footprint wheel on the control node (run by the footprint role).

    build_wheel.py SOURCE OUTDIR [--wheelhouse DIR --python-version X.Y --platform TAG ...]

Copies SOURCE (the app's project directory) without build leftovers into a temporary
directory, builds the wheel there with a fixed SOURCE_DATE_EPOCH (same source -> same
bytes, so copying it to the host is idempotent) and replaces OUTDIR's wheels with it.
With --wheelhouse, also downloads the wheels of every dependency for the target Python
and platform into DIR (binary wheels only), for hosts without an index.
Prints one JSON object: {"wheel": PATH, "wheelhouse": DIR or null}.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

IGNORED = shutil.ignore_patterns("build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".venv", "tests", ".git",
                                 ".hypothesis", ".schemathesis")  # test caches: written while tests run
# 1980-01-01, the earliest date a zip file can hold
FIXED_EPOCH = "315532800"


def build(source: Path, outdir: Path) -> Path:
    with tempfile.TemporaryDirectory(prefix="footprint-build-") as tmp:
        staged = Path(tmp) / "src"
        shutil.copytree(source, staged, ignore=IGNORED)
        vendor = staged / "tools" / "vendor_js.py"
        if vendor.is_file():  # the dashboard's pinned JavaScript (npm, integrity-checked) into the package
            subprocess.run([sys.executable, str(vendor), str(staged)], check=True, stdout=subprocess.DEVNULL)
        built = Path(tmp) / "out"
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(built), str(staged)],
            check=True,
            env={**os.environ, "SOURCE_DATE_EPOCH": FIXED_EPOCH},
        )
        wheels = sorted(built.glob("*.whl"))
        if len(wheels) != 1:
            raise SystemExit(f"expected one wheel, got {[w.name for w in wheels]}")
        outdir.mkdir(parents=True, exist_ok=True)
        for old in outdir.glob("*.whl"):
            if old.name != wheels[0].name:
                old.unlink()
        target = outdir / wheels[0].name
        if not target.exists() or target.read_bytes() != wheels[0].read_bytes():
            # whole or not at all: another play on this control node may be reading it (CI runs
            # scenarios side by side)
            partial = outdir / f".{wheels[0].name}.{os.getpid()}"
            shutil.copyfile(wheels[0], partial)
            os.replace(partial, target)
        return target


EXTRA = "server"  # what a host runs: the collector, the consumer, the stats (tasks/install.yml too)


def download_dependencies(wheel: Path, wheelhouse: Path, python_version: str, platforms: list[str]) -> None:
    wheelhouse.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:", "--dest", str(wheelhouse)]
    cmd += ["--python-version", python_version]
    for tag in platforms:
        cmd += ["--platform", tag]
    subprocess.run([*cmd, f"{wheel}[{EXTRA}]"], check=True)
    (wheelhouse / wheel.name).unlink(missing_ok=True)  # the app's own wheel travels separately


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("source", type=Path)
    ap.add_argument("outdir", type=Path)
    ap.add_argument("--wheelhouse", type=Path)
    ap.add_argument("--python-version", default="")
    ap.add_argument("--platform", action="append", default=[])
    args = ap.parse_args()
    if not (args.source / "pyproject.toml").is_file():
        print(f"{args.source} has no pyproject.toml", file=sys.stderr)
        return 2
    wheel = build(args.source.resolve(), args.outdir.resolve())
    if args.wheelhouse:
        if not args.python_version or not args.platform:
            print("--wheelhouse needs --python-version and --platform", file=sys.stderr)
            return 2
        download_dependencies(wheel, args.wheelhouse.resolve(), args.python_version, args.platform)
    print(json.dumps({"wheel": str(wheel), "wheelhouse": str(args.wheelhouse) if args.wheelhouse else None}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
