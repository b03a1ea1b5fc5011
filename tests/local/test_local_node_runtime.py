"""The Lambda runner's Node.js runtime (``node_runtime/bootstrap.mjs``): handlers as Lambda runs them.

Each test writes a small Node.js function to ``tmp_path`` and invokes it in a :class:`LambdaRunner`:
async and callback handlers, CommonJS and ES modules, errors as Lambda reports them, init errors,
the context object and warm reuse. Needs ``node`` (the CDK CLI needs it too).
"""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cdk_serverless_patterns.local.lambda_runtime import FunctionSpec, LambdaRunner, node_path

pytestmark = pytest.mark.slow  # Node is a prerequisite of `make test` (the CDK CLI): no skip without it

ARN = "arn:aws:lambda:us-east-1:123456789012:function:{}"

CJS = r"""
let count = 0;
exports.handler = async (event, context) => {
  count += 1;
  if (event.action === "throw") throw new TypeError("the handler failed on purpose");
  if (event.action === "reject-string") return Promise.reject("just a string");
  return {
    count,
    pid: process.pid,
    event,
    functionName: context.functionName,
    functionVersion: context.functionVersion,
    awsRequestId: context.awsRequestId,
    invokedFunctionArn: context.invokedFunctionArn,
    memoryLimitInMB: context.memoryLimitInMB,
    logGroupName: context.logGroupName,
    logStreamName: context.logStreamName,
    remaining: context.getRemainingTimeInMillis(),
    waits: context.callbackWaitsForEmptyEventLoop,
    nodePath: process.env.NODE_PATH,
  };
};
"""

CALLBACK = r"""
exports.nested = {
  handler(event, context, callback) {
    if (event.fail) return setTimeout(() => callback(new Error("callback error")), 10);
    setTimeout(() => callback(null, { doubled: event.n * 2 }), 10);
  },
};
"""

ESM = r"""
import { createHash } from "node:crypto";
export const handler = async (event) => ({ esm: true, hash: createHash("sha256").update(event.text).digest("hex") });
"""


@pytest.fixture
def runner(tmp_path: Path) -> Iterator[LambdaRunner]:
    runner = LambdaRunner(aws_env={"AWS_REGION": "us-east-1"}, workdir=tmp_path / "runner")
    yield runner
    runner.shutdown()
    assert runner.environments() == []


def spec(tmp_path: Path, name: str, files: dict[str, str], handler: str = "index.handler", **kw: Any) -> FunctionSpec:
    code = tmp_path / name
    code.mkdir()
    for file, text in files.items():
        (code / file).write_text(text)
    return FunctionSpec(
        name=name, arn=ARN.format(name), handler=handler, runtime="nodejs20.x", code_dir=code, timeout=10, **kw
    )


def test_async_commonjs_handler_context_and_warm_reuse(runner: LambdaRunner, tmp_path: Path) -> None:
    fn = spec(tmp_path, "cjs", {"index.js": CJS}, memory_mb=256)
    first = runner.invoke(fn, b'{"a": [1, "two"]}', request_id="req-1")
    assert first.function_error is None, first.payload
    body = first.json()
    assert body["event"] == {"a": [1, "two"]}
    assert body["functionName"] == "cjs" and body["functionVersion"] == "$LATEST"
    assert body["awsRequestId"] == "req-1" == first.request_id
    assert body["invokedFunctionArn"] == ARN.format("cjs")
    assert body["memoryLimitInMB"] == "256"
    assert body["logGroupName"] == "/aws/lambda/cjs" and body["logStreamName"]
    assert 0 < body["remaining"] <= 10_000
    assert body["waits"] is True
    folders = body["nodePath"].split(":")
    assert folders[0].endswith("/nodejs/node20/node_modules") and folders[1].endswith("/nodejs/node_modules")
    assert len(folders) == len(node_path(fn, "/opt")) and folders[-1] == str(fn.code_dir)
    assert first.init_ms is not None
    second = runner.invoke(fn, b"{}")
    assert second.json()["count"] == 2 and second.json()["pid"] == body["pid"]  # warm: same process, state kept
    assert second.init_ms is None


def test_callback_handler_with_nested_path(runner: LambdaRunner, tmp_path: Path) -> None:
    fn = spec(tmp_path, "cb", {"app.cjs": CALLBACK}, handler="app.nested.handler")
    assert runner.invoke(fn, b'{"n": 21}').json() == {"doubled": 42}
    failed = runner.invoke(fn, b'{"fail": true}')
    assert failed.function_error == "Unhandled"
    assert failed.json()["errorType"] == "Error" and failed.json()["errorMessage"] == "callback error"


def test_es_module_handler(runner: LambdaRunner, tmp_path: Path) -> None:
    fn = spec(tmp_path, "esm", {"index.mjs": ESM})
    body = runner.invoke(fn, b'{"text": "abc"}').json()
    assert body == {"esm": True, "hash": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"}


def test_exception_is_an_unhandled_error_and_the_environment_stays_warm(runner: LambdaRunner, tmp_path: Path) -> None:
    fn = spec(tmp_path, "err", {"index.js": CJS})
    failed = runner.invoke(fn, b'{"action": "throw"}')
    assert failed.function_error == "Unhandled"
    error = failed.json()
    assert error["errorType"] == "TypeError" and error["errorMessage"] == "the handler failed on purpose"
    assert isinstance(error["trace"], list) and error["trace"][0].startswith("TypeError")
    rejected = runner.invoke(fn, b'{"action": "reject-string"}').json()
    assert rejected["errorType"] == "string" and rejected["errorMessage"] == "just a string"
    assert runner.invoke(fn, b"{}").json()["count"] == 3  # the same warm environment answered all three


@pytest.mark.parametrize(
    ("files", "handler", "error_type"),
    [
        ({"index.js": CJS}, "missing.handler", "Runtime.ImportModuleError"),
        ({"index.js": "require('no-such-package');"}, "index.handler", "Runtime.ImportModuleError"),
        ({"index.js": "exports.other = () => 1;"}, "index.handler", "Runtime.HandlerNotFound"),
        ({"index.js": "exports.handler = ( =>;"}, "index.handler", "Runtime.UserCodeSyntaxError"),
        ({"index.js": CJS}, "nodot", "Runtime.MalformedHandlerName"),
    ],
)
def test_init_errors(
    runner: LambdaRunner, tmp_path: Path, files: dict[str, str], handler: str, error_type: str
) -> None:
    fn = spec(tmp_path, "broken", files, handler=handler)
    result = runner.invoke(fn, b"{}")
    assert result.function_error == "Unhandled"
    assert result.init_failed
    assert result.json()["errorType"] == error_type


def test_https_to_the_local_endpoint_goes_over_http(tmp_path: Path) -> None:
    """A custom resource handler PUTs its answer with https.request({hostname, path}): it reaches the endpoint."""
    received: list[tuple[str, str, bytes]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_PUT(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"]))
            received.append((self.command, self.path, body))
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    endpoint = f"http://localhost:{server.server_address[1]}"
    runner = LambdaRunner(aws_env={"AWS_ENDPOINT_URL": endpoint}, workdir=tmp_path / "runner")
    put = r"""
const https = require("https");
exports.handler = (event) => new Promise((resolve, reject) => {
  const body = JSON.stringify({ Status: "SUCCESS" });
  const url = new URL(event.url);
  const headers = { "content-type": "", "content-length": Buffer.byteLength(body) };
  const options = { hostname: url.hostname, path: url.pathname + url.search, method: "PUT", headers };
  const req = https.request(options, (res) => { res.resume(); resolve(res.statusCode); });
  req.on("error", reject);
  req.end(body);
});
"""
    try:
        fn = spec(tmp_path, "put", {"index.js": put})
        result = runner.invoke(fn, json.dumps({"url": "https://localhost/cfn?stack=s1"}).encode())
        assert result.function_error is None, result.payload
        assert result.json() == 200
        assert received == [("PUT", "/cfn?stack=s1", b'{"Status":"SUCCESS"}')]
        other = runner.invoke(fn, json.dumps({"url": "https://127.0.0.2:1/x"}).encode())
        assert other.function_error == "Unhandled"  # only the endpoint's own host name is rerouted
    finally:
        runner.shutdown()
        server.shutdown()
        server.server_close()
