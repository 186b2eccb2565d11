"""The figures a benchmark reports to `make bench` (benchmarks/bench.py), beside what it prints.

A benchmark calls ``record`` for each figure that has a target or a reference; with
FOOTPRINT_BENCH_FIGURES unset (a benchmark run by hand) nothing is written.
"""

from __future__ import annotations

import json
import os
from typing import Literal

ENV = "FOOTPRINT_BENCH_FIGURES"


def record(figure: str, value: float, unit: str, *, target: float | None = None,
           better: Literal["higher", "lower"] = "higher", reference: float | None = None, note: str = "",
           limit: str = "") -> None:
    """One figure: its value, the target it must reach (``better``: which side meets it), when the
    benchmark measured a reference revision in the same run, that revision's value, and ``limit``: what
    this run measured that limits the figure (printed under the table when the target is missed)."""
    path = os.environ.get(ENV)
    if not path:
        return
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps({"figure": figure, "value": value, "unit": unit, "target": target, "better": better,
                            "reference": reference, "note": note,
                            "limit": limit}) + "\n")
