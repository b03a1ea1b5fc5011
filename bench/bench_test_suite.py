#!/usr/bin/env python3
"""Wall time of the whole `make test`, as a ratio to the cost of one CDK import measured in the same run.

The CDK import (~5 s a process) is the unit every test process pays at least once; the target in ARCHITECTURE.md
for `make test` is under 5 minutes on 2 cores once dependencies are installed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def wall(command: list[str]) -> tuple[float, int]:
    started = time.perf_counter()
    result = subprocess.run(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - started, result.returncode


def main() -> int:
    env_python = sys.executable
    cdk_import, _ = wall([env_python, "-c", "import aws_cdk"])
    if os.environ.get("BENCH_SKIP_TEST_SUITE"):
        print(f"one CDK import: {cdk_import:.2f} s (test suite skipped by BENCH_SKIP_TEST_SUITE)")
        return 0
    suite, code = wall(["make", "test"])
    print(f"one CDK import (baseline):  {cdk_import:.2f} s")
    print(f"make test (lint, types, all tests): {suite:.1f} s, exit {code}")
    print(f"  ratio make-test/CDK-import: {suite / cdk_import:.1f}x; target: under 300 s ({suite / 300:.2f} of it)")
    return 0 if code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
