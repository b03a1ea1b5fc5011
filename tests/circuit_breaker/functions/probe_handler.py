"""The handler the extension and client tests run in a Lambda environment: asks for states, runs protected calls."""

import circuit_breaker_client as cb


def handler(event, context):
    client = cb.default_client()
    action = event.get("action", "status")
    if action == "status":
        return [cb.default_client().status(c).__dict__ for c in event["circuits"]]
    if action == "protected":
        calls = []

        @cb.protected(event["circuit"], fallback=lambda: "fallback")
        def downstream():
            calls.append(1)
            if event.get("fail"):
                raise RuntimeError("downstream failed")
            return "called"

        results = []
        for _ in range(event.get("times", 1)):
            try:
                results.append(downstream())
            except RuntimeError as error:
                results.append(f"error: {error}")
        return {"results": results, "calls": len(calls), "policy": client.policy}
    raise ValueError(action)
