#!/usr/bin/env python3
"""Callback pattern under load: many workflows at once, three duplicate completion events each.

The synthesized workflow (start job -> ``CallbackPattern.wait_for_job``) and resumer run in moto's
Step Functions interpreter with the local bridges. For each of ``--workflows`` (default 200)
workflows, three copies of its job's completion event are put on the bus, all starts and events
in one random order: some events arrive before the workflow exists or while its wait step parks,
some after. The scenario checks what the functional test checks (exactly one resume per workflow,
none hung, no token record left) and prints throughput against a baseline measured in the same
run: the same pattern with one event per workflow, put after every workflow parked.

Takes about a minute per 50 workflows on a 2-core machine: the interpreter, not the pattern, is the
limit (see the printed breakdown).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

os.environ.setdefault("AWS_REGION", "us-east-1")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "18,20")
os.environ.setdefault("JSII_DEPRECATED", "quiet")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "constructs"))

DUPLICATES = 3


def build() -> dict[str, Any]:
    import aws_cdk as cdk
    from aws_cdk import aws_stepfunctions as sfn

    from cdk_serverless_patterns import CallbackPattern, JobSource

    app = cdk.App()
    stack = cdk.Stack(app, "CallbackLoad")
    translate = JobSource.translate_text_translation_job()
    pattern = CallbackPattern(stack, "Callback", sources=[translate])
    start = sfn.Pass(stack, "Start job", parameters={"JobId.$": "$.jobId"}, result_path="$.started")
    wait = pattern.wait_for_job("Wait", source=translate, job_id_path="$.started.JobId", timeout=cdk.Duration.hours(1))
    flow = sfn.StateMachine(stack, "Flow", definition_body=sfn.DefinitionBody.from_chainable(start.next(wait)))
    pattern.grant_wait(flow)
    return dict(app.synth().get_stack_by_name("CallbackLoad").template)


class Load:
    def __init__(self, aws: Any, template: dict[str, Any]) -> None:
        deployment = aws.deploy(template)
        machine = "AWS::StepFunctions::StateMachine"
        self.flow = deployment.arn(deployment.find(template, machine, "Flow"))
        self.resumer = deployment.arn(deployment.find(template, machine, "CallbackResumer"))
        self.table = deployment.ref(deployment.find(template, "AWS::DynamoDB::Table", "CallbackTable"))
        self.sfn = aws.session.client("stepfunctions")
        self.events = aws.session.client("events")
        self.dynamodb = aws.session.client("dynamodb")

    def executions(self, arn: str) -> list[dict[str, Any]]:
        pages = self.sfn.get_paginator("list_executions").paginate(stateMachineArn=arn)
        return [run for page in pages for run in page["executions"]]

    def wait_all(self, arn: str, count: int, timeout: float) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            runs = self.executions(arn)
            if len(runs) >= count and all(run["status"] != "RUNNING" for run in runs):
                return runs
            time.sleep(0.2)
        raise RuntimeError(f"{arn}: not all of {count} executions ended in {timeout} s")

    def items(self) -> list[dict[str, Any]]:
        pages = self.dynamodb.get_paginator("scan").paginate(TableName=self.table)
        return [item for page in pages for item in page["Items"]]

    def put(self, entries: list[dict[str, Any]]) -> None:
        for first in range(0, len(entries), 10):
            assert self.events.put_events(Entries=entries[first : first + 10])["FailedEntryCount"] == 0

    def start(self, job: str) -> None:
        self.sfn.start_execution(stateMachineArn=self.flow, name=job, input=json.dumps({"jobId": job}))


def event(job: str) -> dict[str, Any]:
    return {
        "Source": "aws.translate",
        "DetailType": "Translate TextTranslationJob State Change",
        "Detail": json.dumps({"jobId": job, "jobStatus": "COMPLETED"}),
    }


def scenario(load: Load, workflows: int, seed: int, duplicates: bool, timeout: float) -> dict[str, Any]:
    rng = random.Random(seed)
    jobs = [f"{'dup' if duplicates else 'one'}-{seed}-{n}" for n in range(workflows)]
    began = time.monotonic()
    if duplicates:
        actions = [("start", job) for job in jobs] + [("event", job) for job in jobs for _ in range(DUPLICATES)]
        rng.shuffle(actions)
        batch: list[dict[str, Any]] = []
        for action, job in actions:
            if action == "start":
                load.start(job)
            else:
                batch.append(event(job))
                if len(batch) == 10 or rng.random() < 0.5:
                    load.put(batch)
                    batch = []
        load.put(batch)
    else:
        for job in jobs:
            load.start(job)
        deadline = time.monotonic() + timeout
        while sum(1 for item in load.items() if item["id"]["S"].startswith("translate#one-")) < workflows:
            if time.monotonic() > deadline:
                raise RuntimeError("the workflows did not all park")
            time.sleep(0.2)
        load.put([event(job) for job in jobs])
    previous = len(load.executions(load.flow)) - workflows
    flows = load.wait_all(load.flow, previous + workflows, timeout)
    resumes = load.wait_all(load.resumer, len(load.executions(load.resumer)), timeout)
    elapsed = time.monotonic() - began
    mine = [run for run in flows if run["name"] in set(jobs)]
    assert all(run["status"] == "SUCCEEDED" for run in mine), Counter(run["status"] for run in mine)
    return {"elapsed": elapsed, "workflows": len(mine), "resumer_runs": len(resumes)}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workflows", type=int, default=200)
    parser.add_argument("--baseline", type=int, default=50, help="workflows of the one-event baseline")
    args = parser.parse_args(argv[1:])

    from cdk_serverless_patterns.local import emulator

    template = build()
    with emulator() as aws:
        load = Load(aws, template)
        base = scenario(load, args.baseline, seed=1, duplicates=False, timeout=600)
        before = base["resumer_runs"]
        dup = scenario(load, args.workflows, seed=2, duplicates=True, timeout=1200)
        runs = [load.sfn.describe_execution(executionArn=r["executionArn"]) for r in load.executions(load.resumer)]
        results = Counter(json.loads(r["output"])["result"] for r in runs if r.get("output"))
        tokens = [item for item in load.items() if item["kind"]["S"] == "token"]
        durations = sorted((r["stopDate"] - r["startDate"]).total_seconds() for r in runs)

    dup_runs = dup["resumer_runs"] - before
    assert not tokens, f"{len(tokens)} token records left"
    assert results["RESUMED"] + results["RECORDED"] == args.baseline + args.workflows, results
    base_rate = base["workflows"] / base["elapsed"]
    dup_rate = dup["workflows"] / dup["elapsed"]
    print(f"callback pattern under load (moto interpreter, one process, {os.cpu_count()} cores)")
    print(
        f"  baseline: {base['workflows']} workflows, one event each after parking: {base['elapsed']:.1f} s, "
        f"{base_rate:.2f} workflows/s"
    )
    print(
        f"  load:     {dup['workflows']} workflows, {DUPLICATES} duplicate events each in random order "
        f"({dup_runs} resumer runs): {dup['elapsed']:.1f} s, {dup_rate:.2f} workflows/s, "
        f"{dup_runs / dup['elapsed']:.2f} events/s"
    )
    print(f"  ratio (load / baseline workflows per second): {dup_rate / base_rate:.2f}x")
    print(f"  resumer results: {dict(results)}; token records left: {len(tokens)}")
    print(
        f"  resumer run in moto: median {durations[len(durations) // 2]:.2f} s, p95 "
        f"{durations[int(len(durations) * 0.95)]:.2f} s (runs overlap: one Python process interprets all)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
