"""Many workflows at once, each with three duplicate completion events in random order: some
before its wait step stores the token, some after. Exactly one resume per workflow, none hung, no
token left in the table. The synthesized ASL runs in moto's interpreter (see test_callback_flows).

The size is kept so that the test runs in well under a minute on a 2-core machine;
``bench/bench_callback.py --load`` runs the same scenario with 200+ workflows and prints throughput.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from typing import Any

import pytest

pytestmark = pytest.mark.slow

WORKFLOWS = 30
DUPLICATES = 3


def _event(job_id: str) -> dict[str, Any]:
    return {
        "Source": "aws.translate",
        "DetailType": "Translate TextTranslationJob State Change",
        "Detail": json.dumps({"jobId": job_id, "jobStatus": "COMPLETED"}),
    }


#: Jobs that take each path for certain, whatever the machine's speed: all events before the
#: workflow starts (the completion is recorded first), and all events after the token is stored.
SURE = 3


def run_load(flows: Any, workflows: int, seed: int, timeout: float) -> dict[str, Any]:
    """Starts ``workflows`` waits and puts ``DUPLICATES`` completion events for each and waits until
    every workflow and every resumer run ended; returns what happened. ``SURE`` jobs get all their
    events before their workflow starts, ``SURE`` more after their token is stored, and the rest
    one random order of starts and events (an event may come before, while or after its workflow
    parks: which path it takes then depends on timing)."""
    rng = random.Random(seed)
    jobs = [f"load-{seed}-{n}" for n in range(workflows)]
    early, late, mixed = jobs[:SURE], jobs[SURE : 2 * SURE], jobs[2 * SURE :]
    executions: dict[str, str] = {}
    began = time.monotonic()

    def put(entries: list[dict[str, Any]]) -> None:
        for first in range(0, len(entries), 10):  # PutEvents takes up to 10 entries
            assert flows.events.put_events(Entries=entries[first : first + 10])["FailedEntryCount"] == 0

    put([_event(job) for job in early for _ in range(DUPLICATES)])
    for job in early:
        flows.wait_for_item(f"translate#{job}", kind="completion", timeout=timeout)
        executions[job] = flows.start("TranslateFlow", job)
    for job in late:
        executions[job] = flows.start("TranslateFlow", job)
    for job in late:
        flows.wait_for_item(f"translate#{job}", kind="token", timeout=timeout)
    put([_event(job) for job in late for _ in range(DUPLICATES)])

    actions = [("start", job) for job in mixed] + [("event", job) for job in mixed for _ in range(DUPLICATES)]
    rng.shuffle(actions)
    pending: list[dict[str, Any]] = []
    for action, job in actions:
        if action == "start":
            executions[job] = flows.start("TranslateFlow", job)
        else:
            pending.append(_event(job))
            if len(pending) == 10 or rng.random() < 0.5:
                put(pending)
                pending = []
    put(pending)
    finished = {job: flows.finish(arn, timeout=timeout) for job, arn in executions.items()}
    runs = flows.resumer_runs(workflows * DUPLICATES, timeout=timeout)
    elapsed = time.monotonic() - began
    return {"executions": executions, "finished": finished, "runs": runs, "elapsed": elapsed, "jobs": jobs}


def test_many_workflows_with_duplicate_events_resume_exactly_once(moto_flows: Any) -> None:
    flows = moto_flows
    outcome = run_load(flows, WORKFLOWS, seed=8, timeout=120)
    results: dict[str, list[str]] = {job: [] for job in outcome["jobs"]}
    for run in outcome["runs"]:
        assert run["status"] == "SUCCEEDED", (run.get("error"), run.get("cause"))
        results[run["result"]["id"].split("#", 1)[1]].append(run["result"]["result"])
    paths: Counter[str] = Counter()
    for job, execution in outcome["executions"].items():
        finished = outcome["finished"][job]
        assert finished["status"] == "SUCCEEDED", (job, finished)
        assert json.loads(finished["output"])["job"] == {"jobId": job, "jobStatus": "COMPLETED"}
        parked_and_resumed = sum(
            1
            for event in flows.history(execution)
            if event["type"] == "TaskSucceeded"
            and event["taskSucceededEventDetails"]["resource"] == "putItem.waitForTaskToken"
        )
        # Exactly one event took effect: it resumed the parked waiter, or it was recorded before
        # the waiter parked and the waiter took it; the other two were duplicates.
        first, *others = sorted(results[job], key=lambda r: r == "DUPLICATE")
        assert others == ["DUPLICATE"] * (DUPLICATES - 1), (job, results[job])
        assert (first, parked_and_resumed) in {("RESUMED", 1), ("RECORDED", 0)}, (job, results[job])
        paths[first] += 1
    assert flows.tokens() == {}, "no token left behind"
    assert {item["kind"]["S"] for item in flows.items().values()} == {"resumed"}
    # Both paths were taken: events before the token was stored, and after.
    assert paths["RESUMED"] >= SURE and paths["RECORDED"] >= SURE, paths
