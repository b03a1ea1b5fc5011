// The Node.js runtime of the local Lambda runner (cdk_serverless_patterns.local.lambda_runtime).
//
// Lambda's managed Node.js runtime, reduced to what a function sees: the Runtime API loop (GET next,
// POST response / error, POST init/error), the handler resolved from _HANDLER in LAMBDA_TASK_ROOT
// ("dir/module.path.to.fn": module = up to the first dot after the last slash; .js, .mjs then .cjs;
// CommonJS and ES modules alike through import()), async handlers and callback handlers, and the
// context object (functionName, functionVersion, invokedFunctionArn, memoryLimitInMB, awsRequestId,
// logGroupName, logStreamName, getRemainingTimeInMillis, callbackWaitsForEmptyEventLoop, done /
// succeed / fail). Errors are {errorType, errorMessage, trace}; init errors are
// Runtime.ImportModuleError, Runtime.HandlerNotFound, Runtime.MalformedHandlerName or
// Runtime.UserCodeSyntaxError, as Lambda names them.
//
// Not emulated: callbackWaitsForEmptyEventLoop=true does not wait for the event loop to drain (the
// answer goes back when the callback is called, as with false), response streaming.
//
// Bridge: a CloudFormation custom resource handler (CDK's handlers, cfn-response) PUTs its answer to
// the ResponseURL with https.request({hostname, path}), i.e. HTTPS on port 443. Locally the
// ResponseURL points at the emulator's plain-HTTP endpoint (AWS_ENDPOINT_URL, on localhost): an HTTPS
// request to localhost or 127.0.0.1 on port 443 (nothing listens there) goes to that endpoint over
// HTTP. Nothing else is rerouted; and host names under .localhost resolve to localhost (below).
//
// Not emulated either: the runtime's own AWS SDK v3 (/var/runtime/node_modules) is whatever the
// runner puts on NODE_PATH (lambda_runtime.node_path); the host's node runs every nodejs* version.
import http from "node:http";
import https from "node:https";
import dns from "node:dns";
import fs from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";

const API = `http://${process.env.AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime`;

// -- the ResponseURL bridge --------------------------------------------------------------------
(() => {
  let endpoint;
  try {
    endpoint = new URL(process.env.AWS_ENDPOINT_URL || "");
  } catch {
    return;
  }
  const local = ["localhost", "127.0.0.1"];
  if (endpoint.protocol !== "http:" || !local.includes(endpoint.hostname)) return;
  const original = https.request;
  https.request = function request(options, ...rest) {
    if (options && typeof options === "object" && !(options instanceof URL)) {
      const host = options.hostname || options.host;
      const port = options.port === undefined || options.port === null ? 443 : Number(options.port);
      if (local.includes(host) && port === 443) {
        const { agent: _agent, ...plain } = options;
        return http.request({ ...plain, protocol: "http:", hostname: endpoint.hostname, port: Number(endpoint.port || 80) }, ...rest);
      }
    }
    return original.call(this, options, ...rest);
  };
})();

// -- *.localhost is the loopback (RFC 6761), as browsers and systemd-resolved have it -----------------
// The AWS SDK v3 addresses S3 buckets by virtual host (bucket.localhost:port with a local endpoint);
// the C library's resolver here does not resolve subdomains of localhost.
(() => {
  const original = dns.lookup;
  dns.lookup = function lookup(hostname, ...rest) {
    const local = typeof hostname === "string" && hostname.toLowerCase().endsWith(".localhost");
    return original.call(this, local ? "localhost" : hostname, ...rest);
  };
})();

// -- Runtime API -------------------------------------------------------------------------------
function call(method, url, body, headers = {}) {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : Buffer.from(body, "utf8");
    const all = data === undefined ? headers : { ...headers, "Content-Length": data.length };
    const req = http.request(url, { method, headers: all, agent: false }, (res) => {
      const chunks = [];
      res.on("data", (c) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end(data);
  });
}

function errorBody(error, fallbackType) {
  // As Lambda's Node.js runtime: an Error gives its name, message and stack; anything else its type.
  if (error instanceof Error) {
    return {
      errorType: error.name || fallbackType,
      errorMessage: error.message,
      trace: typeof error.stack === "string" ? error.stack.split("\n") : [],
    };
  }
  let message;
  try {
    message = typeof error === "object" && error !== null ? JSON.stringify(error) : String(error);
  } catch {
    message = String(error);
  }
  return { errorType: typeof error === "object" ? fallbackType : typeof error, errorMessage: message, trace: [] };
}

async function postError(url, body) {
  const json = JSON.stringify(body);
  console.error(JSON.stringify({ level: "ERROR", ...body }));
  await call("POST", url, json, {
    "Content-Type": "application/json",
    "Lambda-Runtime-Function-Error-Type": body.errorType,
  });
}

async function initError(errorType, error) {
  const body = errorBody(error, errorType);
  body.errorType = errorType;
  await postError(`${API}/init/error`, body);
  process.exit(1);
}

// -- the handler -------------------------------------------------------------------------------
function splitHandler(handler) {
  const slash = handler.lastIndexOf("/");
  const dot = handler.indexOf(".", slash + 1);
  if (dot < 0) return null;
  return [handler.slice(0, dot), handler.slice(dot + 1)];
}

async function loadHandler() {
  const handler = process.env._HANDLER || "";
  const root = process.env.LAMBDA_TASK_ROOT || process.cwd();
  const parts = splitHandler(handler);
  if (!parts || !parts[0] || !parts[1]) {
    return initError("Runtime.MalformedHandlerName", new Error(`Bad handler ${handler}`));
  }
  const [moduleName, functionPath] = parts;
  const base = path.resolve(root, moduleName);
  const file = [".js", ".mjs", ".cjs"].map((ext) => base + ext).find((f) => fs.existsSync(f));
  if (!file) {
    return initError("Runtime.ImportModuleError", new Error(`Error: Cannot find module '${moduleName}'`));
  }
  let mod;
  try {
    mod = await import(pathToFileURL(file).href);
  } catch (error) {
    const kind = error instanceof SyntaxError ? "Runtime.UserCodeSyntaxError" : "Runtime.ImportModuleError";
    return initError(kind, error);
  }
  const resolve = (start) => functionPath.split(".").reduce((obj, key) => (obj == null ? undefined : obj[key]), start);
  let fn = resolve(mod);
  if (typeof fn !== "function" && mod.default) fn = resolve(mod.default);
  if (typeof fn !== "function") {
    return initError("Runtime.HandlerNotFound", new Error(`${moduleName}.${functionPath} is undefined or not exported`));
  }
  return fn;
}

// -- one invocation ----------------------------------------------------------------------------
function contextFor(headers) {
  const deadline = Number(headers["lambda-runtime-deadline-ms"]);
  const context = {
    callbackWaitsForEmptyEventLoop: true,
    functionName: process.env.AWS_LAMBDA_FUNCTION_NAME,
    functionVersion: process.env.AWS_LAMBDA_FUNCTION_VERSION,
    invokedFunctionArn: headers["lambda-runtime-invoked-function-arn"],
    memoryLimitInMB: process.env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE,
    awsRequestId: headers["lambda-runtime-aws-request-id"],
    logGroupName: process.env.AWS_LAMBDA_LOG_GROUP_NAME,
    logStreamName: process.env.AWS_LAMBDA_LOG_STREAM_NAME,
    getRemainingTimeInMillis: () => Math.max(0, deadline - Date.now()),
  };
  if (headers["lambda-runtime-client-context"]) {
    try {
      context.clientContext = JSON.parse(headers["lambda-runtime-client-context"]);
    } catch {
      /* as Lambda: an unreadable client context is left out */
    }
  }
  if (headers["lambda-runtime-cognito-identity"]) {
    try {
      context.identity = JSON.parse(headers["lambda-runtime-cognito-identity"]);
    } catch {
      /* left out */
    }
  }
  if (headers["lambda-runtime-aws-tenant-id"]) context.tenantId = headers["lambda-runtime-aws-tenant-id"];
  return context;
}

function run(fn, event, context) {
  return new Promise((resolve, reject) => {
    let settled = false;
    const callback = (error, result) => {
      if (settled) return;
      settled = true;
      if (error !== undefined && error !== null) reject(error);
      else resolve(result);
    };
    context.done = callback;
    context.succeed = (result) => callback(null, result);
    context.fail = (error) => callback(error ?? new Error("handled"));
    let returned;
    try {
      returned = fn(event, context, callback);
    } catch (error) {
      callback(error);
      return;
    }
    if (returned && typeof returned.then === "function") {
      returned.then((result) => callback(null, result), (error) => callback(error ?? new Error("rejected")));
    } else if (fn.length < 3) {
      callback(null, returned); // a synchronous handler without a callback answers what it returns
    }
  });
}

async function main() {
  const fn = await loadHandler();
  for (;;) {
    const next = await call("GET", `${API}/invocation/next`);
    if (next.status !== 200) {
      console.error(`Runtime API next answered ${next.status}: ${next.body}`);
      process.exit(1);
    }
    const requestId = next.headers["lambda-runtime-aws-request-id"];
    const trace = next.headers["lambda-runtime-trace-id"];
    if (trace) process.env._X_AMZN_TRACE_ID = trace;
    else delete process.env._X_AMZN_TRACE_ID;
    let event;
    try {
      event = JSON.parse(next.body.toString("utf8") || "null");
    } catch (error) {
      await postError(`${API}/invocation/${requestId}/error`, errorBody(error, "Runtime.UnmarshalError"));
      continue;
    }
    try {
      const result = await run(fn, event, contextFor(next.headers));
      const body = result === undefined ? "null" : JSON.stringify(result);
      await call("POST", `${API}/invocation/${requestId}/response`, body ?? "null", { "Content-Type": "application/json" });
    } catch (error) {
      await postError(`${API}/invocation/${requestId}/error`, errorBody(error, "Error"));
    }
  }
}

process.on("unhandledRejection", (reason) => {
  console.error(JSON.stringify({ level: "ERROR", ...errorBody(reason, "Runtime.UnhandledPromiseRejection") }));
  process.exit(128);
});

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
