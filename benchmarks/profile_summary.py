#!/usr/bin/env python3
"""Summarise a py-spy profile (``py-spy record -f raw``: collapsed stacks) by function.

Prints the share of the samples in which each function is on the stack (inclusive) and at its top
(self), largest first. py-spy leaves idle threads out, so the shares are of the busy samples.

  python benchmarks/profile_summary.py PROFILE.txt [--top 25] [--match footprint/]
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^:()]*)(?::\d+)?\)$")


def frame_name(frame: str) -> str:
    """``write (footprint/sinks.py:88)`` -> ``footprint/sinks.py:write`` (lines merged)."""
    m = _FRAME.match(frame.strip())
    if not m:
        return frame.strip()
    path = m.group("file")
    for marker in ("site-packages/", "/src/", "lib/python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{path}:{m.group('func')}"


def summarise(text: str) -> tuple[int, Counter[str], Counter[str]]:
    total = 0
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [frame_name(f) for f in stack.split(";") if f]
        for name in set(frames):
            inclusive[name] += n
        if frames:
            own[frames[-1]] += n
    return total, inclusive, own


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("profile", type=Path)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--match", default="", help="only functions whose name contains this")
    args = ap.parse_args()
    total, inclusive, own = summarise(args.profile.read_text())
    if not total:
        print("no samples", file=sys.stderr)
        return 1
    print(f"{total} busy samples")
    for title, counts in (("inclusive (on the stack)", inclusive), ("self (top of the stack)", own)):
        print(f"\n{title}:")
        rows = [(k, v) for k, v in counts.most_common() if args.match in k][: args.top]
        for name, n in rows:
            print(f"  {100 * n / total:5.1f} %  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
