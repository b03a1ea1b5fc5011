#!/usr/bin/env python3
"""Runs every benchmark under bench/ (files named bench_*.py), one process each, and says which failed."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str]) -> int:
    selected = argv[1:]
    scripts = sorted(p for p in HERE.glob("bench_*.py") if not selected or p.stem in selected or p.name in selected)
    if not scripts:
        print(f"no benchmark matches {selected}", file=sys.stderr)
        return 2
    failed = []
    for script in scripts:
        print(f"\n=== {script.name} ===", flush=True)
        started = time.perf_counter()
        result = subprocess.run([sys.executable, str(script)], check=False)
        print(f"--- {script.name}: exit {result.returncode} in {time.perf_counter() - started:.1f} s", flush=True)
        if result.returncode:
            failed.append(script.name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
