"""``pip install footprint`` alone is the middleware for a site's own app: no third-party dependency."""

from __future__ import annotations

import json
import subprocess
import sys
import venv
from pathlib import Path

APP = Path(__file__).resolve().parents[2]
BUILD = APP.parent / "roles" / "footprint" / "files" / "build_wheel.py"
PROBE = """
import sys
from footprint.track import FootprintASGI, FootprintWSGI, HttpSender, PageRecorder
from footprint.contract import validate_batch
event = PageRecorder(site="s").page("GET", "/p", "203.0.113.9", None, "UA", "https://t.co/x", query="utm_source=x")
validate_batch({"batch": [event]}, __import__("datetime").datetime.now(__import__("datetime").UTC), 1)
third_party = sorted(m.split(".")[0] for m in sys.modules if m.split(".")[0] in
                     {"fastapi", "starlette", "pydantic", "confluent_kafka", "psycopg", "ua_parser", "crawlerdetect"})
print(third_party)
"""


def test_the_bare_package_installs_without_any_dependency_and_tracks(tmp_path: Path) -> None:
    built = subprocess.run([sys.executable, str(BUILD), str(APP), str(tmp_path / "wheels")],  # as the role builds it
                           capture_output=True, text=True, check=True, timeout=300)
    wheel = json.loads(built.stdout.splitlines()[-1])["wheel"]
    env_dir = tmp_path / "site-venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    # --no-index: nothing can come from a registry, so any dependency would fail the install
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--no-index", str(wheel)], check=True, timeout=300)
    out = subprocess.run([str(python), "-c", PROBE], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"
    cli = subprocess.run([str(env_dir / "bin" / "footprint"), "--help"], capture_output=True, text=True, timeout=60)
    assert cli.returncode == 2 and "pip install 'footprint[server]'" in cli.stderr
