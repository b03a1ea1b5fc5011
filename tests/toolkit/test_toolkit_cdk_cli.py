"""`npx cdk synth` from the README: the pinned CLI synthesizes the sample app with no network attempt."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CLI = ROOT / "node_modules" / "aws-cdk" / "bin" / "cdk"

pytestmark = pytest.mark.skipif(shutil.which("node") is None or not CLI.exists(), reason="make test installs them")


class ConnectRecorder:
    """A proxy that accepts and records every connection, so any network attempt of the CLI shows."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.requests: list[bytes] = []
        self.sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(1)
                try:
                    self.requests.append(conn.recv(256))
                except OSError:
                    self.requests.append(b"")

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


def synth_through_proxy(
    tmp_path: Path, *, credentials: bool = False
) -> tuple[subprocess.CompletedProcess[str], list[bytes]]:
    recorder = ConnectRecorder()
    proxy = f"http://127.0.0.1:{recorder.port}"
    env = {**os.environ, "HTTPS_PROXY": proxy, "HTTP_PROXY": proxy, "https_proxy": proxy, "http_proxy": proxy}
    env.pop("CDK_DISABLE_CLI_TELEMETRY", None)  # cdk.json alone must keep the CLI quiet
    # A newcomer offline has no AWS credentials; with credentials, the CLI asks STS for the default
    # account before running the app (opportunistic, it carries on when that fails).
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        env.pop(name, None)
    env["AWS_SHARED_CREDENTIALS_FILE"] = str(tmp_path / "no-credentials")
    env["AWS_CONFIG_FILE"] = str(tmp_path / "no-config")
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    if credentials:
        env.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")
    env.pop("NO_PROXY", None)
    env.pop("no_proxy", None)
    try:
        result = subprocess.run(
            ["node", str(CLI), "synth", "--quiet", "--output", str(tmp_path / "cdk.out")],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    finally:
        recorder.close()
    return result, recorder.requests


def test_cdk_synth_works_offline_without_network_attempts(tmp_path: Path) -> None:
    result, attempts = synth_through_proxy(tmp_path)
    assert result.returncode == 0, result.stderr
    assert list((tmp_path / "cdk.out").glob("*.template.json")), "no template synthesized"
    assert attempts == [], f"the CDK CLI tried to reach the network: {attempts}"


def test_the_recorder_sees_the_sts_lookup_the_cli_makes_with_credentials(tmp_path: Path) -> None:
    """Guards the test above: an attempt does show. With credentials the CLI asks STS for the default
    account (and synthesizes anyway when that fails, as it does offline)."""
    result, attempts = synth_through_proxy(tmp_path, credentials=True)
    assert result.returncode == 0, result.stderr
    assert any(request.startswith(b"CONNECT sts.") for request in attempts), attempts
