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


def run_load(flows: Any, workflows: int, seed: int, timeout: float) -> dict[str, Any]:
    """Starts ``workflows`` waits and puts ``DUPLICATES`` completion events for each, all in one
    random order (so an event may come before its workflow starts, while it parks, or after), and
    waits until every workflow and every resumer run ended. Returns what happened."""
    rng = random.Random(seed)
    jobs = [f"load-{seed}-{n}" for n in range(workflows)]
    actions = [("start", job) for job in jobs] + [("event", job) for job in jobs for _ in range(DUPLICATES)]
    rng.shuffle(actions)
    executions: dict[str, str] = {}
    began = time.monotonic()
    pending: list[dict[str, Any]] = []
    for action, job in actions:
        if action == "start":
            executions[job] = flows.start("TranslateFlow", job)
        else:
            pending.append(_event(job))
            if len(pending) == 10 or rng.random() < 0.5:  # PutEvents takes up to 10 entries
                assert flows.events.put_events(Entries=pending)["FailedEntryCount"] == 0
                pending = []
    if pending:
        assert flows.events.put_events(Entries=pending)["FailedEntryCount"] == 0
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
    # The random order exercised both paths (events before and after the token was stored).
    assert paths["RESUMED"] > 0 and paths["RECORDED"] > 0, paths
