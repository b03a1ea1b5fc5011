"""The Lambda Extensions API, spoken over a plain socket.

``http.client`` costs about 25 ms to import; registration is on the function's cold-start path,
so this module needs only ``socket``. Each call opens one connection to
``$AWS_LAMBDA_RUNTIME_API`` and reads the answer to the end (``Connection: close``).
"""

from __future__ import annotations

import socket

API_VERSION = "2020-01-01"
EXTENSION_ID_HEADER = "lambda-extension-identifier"


class ExtensionsApiError(RuntimeError):
    """The Extensions API answered with an error status or an unreadable response."""


def _split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ExtensionsApiError(f"AWS_LAMBDA_RUNTIME_API {address!r} is not host:port")
    return host, int(port)


def request(
    address: str, method: str, path: str, headers: dict[str, str], body: bytes = b"", timeout: float | None = None
) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 request; returns status, lower-cased headers and the body."""
    return receive(send(address, method, path, headers, body, timeout), f"{method} {path}")


def send(
    address: str, method: str, path: str, headers: dict[str, str], body: bytes = b"", timeout: float | None = None
) -> socket.socket:
    """Sends one request and returns the connection to read its answer from (``receive``)."""
    host, port = _split_address(address)
    lines = [f"{method} {path} HTTP/1.1", f"Host: {address}", "Connection: close", f"Content-Length: {len(body)}"]
    lines.extend(f"{name}: {value}" for name, value in headers.items())
    payload = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect((host, port))
        sock.sendall(payload)
    except BaseException:
        sock.close()
        raise
    return sock


def receive(sock: socket.socket, what: str) -> tuple[int, dict[str, str], bytes]:
    """Reads a whole answer (the server closes the connection after it) and closes the socket."""
    chunks: list[bytes] = []
    with sock:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    raw = b"".join(chunks)
    head, sep, rest = raw.partition(b"\r\n\r\n")
    if not sep:
        raise ExtensionsApiError(f"{what}: incomplete response from the Extensions API")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        raise ExtensionsApiError(f"{what}: bad status line {status_line!r}")
    response_headers: dict[str, str] = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        response_headers[name.strip().lower()] = value.strip()
    if response_headers.get("transfer-encoding", "").lower() == "chunked":
        rest = _dechunk(rest)
    elif "content-length" in response_headers:
        rest = rest[: int(response_headers["content-length"])]
    return int(parts[1]), response_headers, rest


def _dechunk(data: bytes) -> bytes:
    out = bytearray()
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";", 1)[0] or b"0", 16)
        if size == 0:
            break
        out += data[:size]
        data = data[size + 2 :]
    return bytes(out)


def register(address: str, name: str, events: tuple[str, ...] = ("INVOKE", "SHUTDOWN")) -> str:
    """Registers the extension; returns its identifier (needed on every later call)."""
    body = ('{"events": [' + ", ".join(f'"{event}"' for event in events) + "]}").encode()
    status, headers, answer = request(
        address,
        "POST",
        f"/{API_VERSION}/extension/register",
        {"Lambda-Extension-Name": name, "Content-Type": "application/json"},
        body,
        timeout=10.0,
    )
    extension_id = headers.get(EXTENSION_ID_HEADER, "")
    if status != 200 or not extension_id:
        raise ExtensionsApiError(f"register answered {status}: {answer[:200]!r}")
    return extension_id


def send_next(address: str, extension_id: str) -> socket.socket:
    """Asks for the next event; the answer (read with ``read_event``) comes when Lambda sends one.

    Sending it tells Lambda this extension is ready; the caller may go on working (importing,
    warming up) before it blocks in ``read_event``.
    """
    return send(address, "GET", f"/{API_VERSION}/extension/event/next", {EXTENSION_ID_HEADER: extension_id})


def read_event(sock: socket.socket) -> bytes:
    """Blocks until the event arrives (INVOKE or SHUTDOWN); returns its JSON body."""
    status, _, body = receive(sock, "event/next")
    if status != 200:
        raise ExtensionsApiError(f"event/next answered {status}: {body[:200]!r}")
    return body


def next_event(address: str, extension_id: str) -> bytes:
    """Blocks until Lambda sends the next event (INVOKE or SHUTDOWN); returns its JSON body."""
    return read_event(send_next(address, extension_id))


def report_error(address: str, extension_id: str, phase: str, error_type: str, message: str) -> None:
    """Reports an error to ``/extension/init/error`` or ``/extension/exit/error`` (phase: init|exit)."""
    body = ('{"errorMessage": ' + _json_string(message) + ', "errorType": ' + _json_string(error_type) + "}").encode()
    request(
        address,
        "POST",
        f"/{API_VERSION}/extension/{phase}/error",
        {
            EXTENSION_ID_HEADER: extension_id,
            "Lambda-Extension-Function-Error-Type": error_type,
            "Content-Type": "application/json",
        },
        body,
        timeout=2.0,
    )


def _json_string(value: str) -> str:
    import json

    return json.dumps(value)
