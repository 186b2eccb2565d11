#!/usr/bin/env python3
"""Vendor the dashboard's JavaScript libraries into the package, at build time (no CDN at run time).

    python tools/vendor_js.py [APP_DIR]

For every entry of APP_DIR/vendor.json (name -> exact version, the registry's sha512 integrity,
files to take): fetch the package tarball with the ordinary npm client (`npm pack`, cached under
$FOOTPRINT_CACHE or ~/.cache/footprint/npm), refuse it unless its sha512 equals the pinned
integrity, and copy the listed files into APP_DIR/src/footprint/static/vendor/ (git-ignored).
Idempotent: nothing is fetched when the cached tarball is already there and verified.
Prints one line per package. Exit 2 when npm is missing or a tarball does not match its pin.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path


def cache_dir() -> Path:
    base = os.environ.get("FOOTPRINT_CACHE") or str(Path.home() / ".cache" / "footprint")
    return Path(base) / "npm"


def integrity(path: Path) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(path.read_bytes()).digest()).decode()


def fetch(name: str, version: str, want: str) -> Path:
    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    tarball = cache / f"{name.replace('/', '-').lstrip('@')}-{version}.tgz"
    if not tarball.exists() or integrity(tarball) != want:
        npm = shutil.which("npm")
        if npm is None:
            raise SystemExit(f"vendor: npm is needed to fetch {name}@{version} (apt-get install npm)")
        out = subprocess.run([npm, "pack", f"{name}@{version}", "--json", "--pack-destination", str(cache)],
                             check=True, capture_output=True, text=True)
        tarball = cache / json.loads(out.stdout)[0]["filename"]
    got = integrity(tarball)
    if got != want:
        tarball.unlink()
        print(f"vendor: {name}@{version}: integrity {got} is not the pinned {want}", file=sys.stderr)
        raise SystemExit(2)
    return tarball


def main() -> int:
    app = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[1])
    pins = json.loads((app / "vendor.json").read_text())
    target = app / "src" / "footprint" / "static" / "vendor"
    target.mkdir(parents=True, exist_ok=True)
    for name, pin in pins.items():
        tarball = fetch(name, pin["version"], pin["integrity"])
        with tarfile.open(tarball) as tar:
            for member, dest in pin["files"].items():
                data = tar.extractfile(member)
                if data is None:
                    raise SystemExit(f"vendor: {member} is not a file in {tarball.name}")
                content = data.read()
                out = target / dest
                if not out.exists() or out.read_bytes() != content:
                    out.write_bytes(content)
        print(f"vendor: {name}@{pin['version']} ({pin['integrity'][:19]}...) -> {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
