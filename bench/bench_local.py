#!/usr/bin/env python3
"""The embedded emulator: time of ``make demo``, local invokes versus in-process calls, and its memory.

1. Invokes: one small Python handler, created in a LocalCloud with ``CreateFunction`` (no CDK needed)
   and called (a) in this process as a plain function: the baseline; (b) through moto's ``Invoke``
   (boto3 -> moto's server -> the Lambda runner -> a warm execution environment), cold (the first call
   starts the environment) and warm; (c) through ``LocalCloud.invoke`` (the runner without moto's HTTP
   layer), warm. Printed as p50 times, the overhead over the baseline and the ratios. The target
   (ARCHITECTURE.md): a warm local invoke within a few milliseconds of the in-process call.
2. ``serverless-patterns demo`` in a subprocess, timed end to end (target under 3 minutes on a warm
   2-core machine), while the memory of its process tree (the demo's Python process with moto, the
   Lambda execution environments and extensions, and during the deployment the CDK CLI) is sampled
   every 0.2 s: peak resident set (RSS, which counts shared pages once per process: an upper bound)
   and proportional set (PSS, shared pages split), over the whole run and after the deployment, when
   every sample stack is deployed and its functions run. The target: under 1.5 GB. The baseline is the
   tree while the emulator is up and nothing is deployed yet (the first sample after it starts).
"""

from __future__ import annotations

import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

os.environ.setdefault("AWS_REGION", "us-east-1")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "18,20")
os.environ.setdefault("CDK_DISABLE_CLI_TELEMETRY", "true")

ROOT = Path(__file__).resolve().parent.parent
WARM_CALLS = int(os.environ.get("BENCH_INVOKES", "200"))
DEMO_TARGET_S = 180.0
MEMORY_TARGET_MB = 1536.0
HANDLER = """
import json

def handler(event, context):
    return {"n": event["n"] + 1, "echo": event.get("pad", "")[:16]}
"""


# -- 1. invokes -------------------------------------------------------------------------------------
def p50(samples: list[float]) -> float:
    return statistics.median(samples)


def bench_invokes() -> None:
    from cdk_serverless_patterns.local.cloud import LocalCloud
    from cdk_serverless_patterns.toolkit.local_commands import quiet_emulator_logs

    quiet_emulator_logs()
    namespace: dict[str, object] = {}
    exec(compile(HANDLER, "bench_handler.py", "exec"), namespace)
    handler = namespace["handler"]
    assert callable(handler)
    inproc = []
    for i in range(WARM_CALLS):
        started = time.perf_counter()
        json.loads(json.dumps(handler({"n": i}, None)))  # the same (de)serialization a payload goes through
        inproc.append((time.perf_counter() - started) * 1000)

    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("bench_handler.py", HANDLER)
    with LocalCloud(log=lambda line: None) as cloud:
        from botocore.config import Config

        lam = cloud.session().client("lambda", config=Config(retries={"total_max_attempts": 1}, read_timeout=60))
        iam = cloud.session().client("iam")
        role = iam.create_role(RoleName="bench", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        lam.create_function(
            FunctionName="bench",
            Runtime="python3.12",
            Role=role,
            Handler="bench_handler.handler",
            Code={"ZipFile": archive.getvalue()},
            Timeout=10,
        )
        started = time.perf_counter()
        first = lam.invoke(FunctionName="bench", Payload=b'{"n": 1}')
        cold_ms = (time.perf_counter() - started) * 1000
        assert json.loads(first["Payload"].read()) == {"n": 2, "echo": ""}, "the cold invoke answered wrong"
        through_moto = []
        for i in range(WARM_CALLS):
            started = time.perf_counter()
            answer = lam.invoke(FunctionName="bench", Payload=json.dumps({"n": i}).encode())
            answer["Payload"].read()
            through_moto.append((time.perf_counter() - started) * 1000)
        direct = []
        for i in range(WARM_CALLS):
            started = time.perf_counter()
            cloud.invoke("bench", {"n": i})
            direct.append((time.perf_counter() - started) * 1000)

    base = p50(inproc)
    print(f"one small handler, {WARM_CALLS} calls each (p50)")
    print(f"  in-process call              {base:9.3f} ms   (baseline)")
    print(
        f"  cold invoke via moto Invoke  {cold_ms:9.1f} ms   overhead {cold_ms - base:8.1f} ms   {cold_ms / base:9.0f}x"
    )
    for label, samples in (("warm invoke via moto Invoke", through_moto), ("warm invoke via the runner", direct)):
        value = p50(samples)
        overhead = value - base
        print(f"  {label:28s} {value:9.3f} ms   overhead {overhead:8.3f} ms   {value / base:9.0f}x")
    verdict = "within" if p50(direct) - base < 5 else "NOT within"
    print(f"  target: a warm invoke within a few ms of the in-process call: runner {verdict} 5 ms")


# -- 2. the demo and its memory ---------------------------------------------------------------------
def tree(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            children.setdefault(int(stat[stat.rfind(")") + 2 :].split()[1]), []).append(int(entry.name))
    found, todo = [pid], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def memory_kb(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of one process in KiB (PSS falls back to RSS where smaps_rollup is unreadable)."""
    rss = pss = 0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
        pss = rss
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                pss = int(line.split()[1])
    except (OSError, ValueError):
        pass
    return rss, pss


def bench_demo() -> int:
    phase = {"name": "starting"}
    peaks: dict[str, list[float]] = {"starting": [0, 0], "idle": [0, 0], "deploying": [0, 0], "deployed": [0, 0]}
    idle_first: list[float] = []
    with tempfile.TemporaryFile("w+") as log:
        started = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, "-u", "-m", "cdk_serverless_patterns", "demo"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert process.stdout is not None

        def follow() -> None:
            assert process.stdout is not None
            for line in process.stdout:
                log.write(line)
                if line.startswith("emulator at"):
                    phase["name"] = "idle"
                elif line.startswith("deploying the sample app"):
                    phase["name"] = "deploying"
                elif line.startswith("deployed "):
                    phase["name"] = "deployed"

        reader = threading.Thread(target=follow, daemon=True)
        reader.start()
        while process.poll() is None:
            rss = pss = 0
            for pid in tree(process.pid):
                r, p = memory_kb(pid)
                rss, pss = rss + r, pss + p
            current = phase["name"]
            peaks[current][0] = max(peaks[current][0], rss / 1024)
            peaks[current][1] = max(peaks[current][1], pss / 1024)
            if current == "idle" and not idle_first:
                idle_first.append(pss / 1024)
            time.sleep(0.2)
        reader.join(timeout=10)
        elapsed = time.perf_counter() - started
        log.seek(0)
        output = log.read()
    print(f"\nserverless-patterns demo: exit {process.returncode} in {elapsed:.1f} s")
    print(f"  target < {DEMO_TARGET_S:.0f} s: {elapsed / DEMO_TARGET_S:.2f}x of the target")
    summary = output[output.rfind("PATTERN") :] if "PATTERN" in output else output[-3000:]
    print("  " + summary.strip().replace("\n", "\n  "))
    overall_rss = max(v[0] for v in peaks.values())
    overall_pss = max(v[1] for v in peaks.values())
    base = idle_first[0] if idle_first else peaks["idle"][1]
    print("memory of the demo's process tree (MB)      peak RSS   peak PSS")
    print(f"  emulator up, nothing deployed (baseline)   {peaks['idle'][0]:8.0f}   {peaks['idle'][1]:8.0f}")
    print(f"  while the CDK CLI deploys                  {peaks['deploying'][0]:8.0f}   {peaks['deploying'][1]:8.0f}")
    deployed_rss, deployed_pss = peaks["deployed"]
    print(f"  every sample stack deployed, scenarios run {deployed_rss:8.0f}   {deployed_pss:8.0f}")
    print(f"  whole run                                  {overall_rss:8.0f}   {overall_pss:8.0f}")
    if base:
        print(f"  deployed / baseline (PSS): {deployed_pss / base:.2f}x")
    print(
        f"  target < {MEMORY_TARGET_MB:.0f} MB with every stack deployed: PSS {deployed_pss / MEMORY_TARGET_MB:.2f}x, "
        f"RSS {deployed_rss / MEMORY_TARGET_MB:.2f}x of the target"
    )
    return process.returncode


def main() -> int:
    started = time.perf_counter()
    bench_invokes()
    code = bench_demo()
    print(f"total {time.perf_counter() - started:.1f} s")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
