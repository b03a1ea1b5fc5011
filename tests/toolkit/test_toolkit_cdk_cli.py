"""The CDK CLI: the pinned one synthesizes the sample app with no network attempt, and the toolkit finds a
compatible CLI (the project's, PATH's, the per-user cache's) or installs the pinned one once (fake npm here:
tests never download)."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from cdk_serverless_patterns.toolkit import apps, cdk_cli_install

ROOT = Path(__file__).resolve().parents[2]
CLI = ROOT / "node_modules" / "aws-cdk" / "bin" / "cdk"

needs_cli = pytest.mark.skipif(shutil.which("node") is None or not CLI.exists(), reason="make test installs them")


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
        # A key id of its own: the CLI caches the account of a key id in ~/.cdk/cache/accounts_partitions.json
        # (deploying into the emulator with "testing" caches 123456789012), and then does not ask STS.
        env.update(AWS_ACCESS_KEY_ID=f"AKIATEST{secrets.token_hex(6).upper()}", AWS_SECRET_ACCESS_KEY="testing")
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


@needs_cli
def test_cdk_synth_works_offline_without_network_attempts(tmp_path: Path) -> None:
    result, attempts = synth_through_proxy(tmp_path)
    assert result.returncode == 0, result.stderr
    assert list((tmp_path / "cdk.out").glob("*.template.json")), "no template synthesized"
    assert attempts == [], f"the CDK CLI tried to reach the network: {attempts}"


@needs_cli
def test_the_recorder_sees_the_sts_lookup_the_cli_makes_with_credentials(tmp_path: Path) -> None:
    """Guards the test above: an attempt does show. With credentials the CLI asks STS for the default
    account (and synthesizes anyway when that fails, as it does offline)."""
    result, attempts = synth_through_proxy(tmp_path, credentials=True)
    assert result.returncode == 0, result.stderr
    assert any(request.startswith(b"CONNECT sts.") for request in attempts), attempts


# ------------------------------------------------------------------ which CDK CLI the toolkit runs
FAKE_NPM = """#!/bin/sh
# Records each call, then lays out what `npm install --prefix DIR aws-cdk@VERSION` would.
echo "$@" >> "{calls}"
[ -n "{fail}" ] && {{ echo "npm ERR! network request failed" >&2; exit 1; }}
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) prefix="$2"; shift;;
    aws-cdk@*) version="${{1#aws-cdk@}}";;
  esac
  shift
done
/bin/mkdir -p "$prefix/node_modules/aws-cdk/bin"
printf '{{"name": "aws-cdk", "version": "%s"}}' "$version" > "$prefix/node_modules/aws-cdk/package.json"
printf '#!/usr/bin/env node\\n' > "$prefix/node_modules/aws-cdk/bin/cdk"
echo "added 1 package"
"""


def fake_tool(folder: Path, name: str, body: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    tool = folder / name
    tool.write_text(body)
    tool.chmod(0o755)
    return tool


def fake_node_modules(project: Path, version: str) -> Path:
    package = project / "node_modules" / "aws-cdk"
    (package / "bin").mkdir(parents=True)
    (package / "package.json").write_text(json.dumps({"name": "aws-cdk", "version": version}))
    (package / "bin" / "cdk").write_text("")
    return package / "bin" / "cdk"


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """PATH with node only (plus tmp_path/bin for fake tools), an empty per-user cache, no resolved CLI kept."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    node = shutil.which("node")
    if node is not None:
        (bin_dir / "node").symlink_to(node)
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setenv("CDK_SERVERLESS_PATTERNS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(apps, "_CLI_CACHE", {})
    return tmp_path


def test_the_pinned_version_is_package_json_s() -> None:
    pinned = json.loads((ROOT / "package.json").read_text())["devDependencies"]["aws-cdk"]
    assert pinned == cdk_cli_install.PINNED_VERSION
    assert cdk_cli_install.parse_version(pinned)[:2] == (cdk_cli_install.REQUIRED_MAJOR, cdk_cli_install.MINIMUM_MINOR)
    installed = json.loads((ROOT / "node_modules" / "aws-cdk" / "package.json").read_text())["version"]
    assert installed == pinned, "npm ci installed another CLI than package.json pins"


@pytest.mark.parametrize(
    ("version", "compatible"),
    [
        ("2.1148.1 (build fcf5e34)", True),
        ("2.1148.0", True),
        ("2.1200.3", True),
        ("2.1147.9", False),  # an older minor may not read cloud-assembly schema 55
        ("2.175.0", False),
        ("3.0.0", False),  # another major
        ("1.204.0", False),
        ("unknown", False),
        ("", False),
    ],
)
def test_compatible_means_same_major_and_at_least_the_pinned_minor(version: str, compatible: bool) -> None:
    assert cdk_cli_install.is_compatible(version) is compatible


def test_a_compatible_cli_in_the_project_comes_first(isolated: Path) -> None:
    entry = fake_node_modules(isolated / "project", "2.1150.0")
    fake_tool(isolated / "bin", "cdk", "#!/bin/sh\necho '2.1160.0 (build x)'\n")
    assert apps.cdk_cli(isolated / "project") == ["node", str(entry)]


def test_an_old_project_cli_gives_way_to_a_compatible_one_on_path(isolated: Path) -> None:
    fake_node_modules(isolated / "project", "2.100.0")
    on_path = fake_tool(isolated / "bin", "cdk", "#!/bin/sh\necho '2.1149.0 (build x)'\n")
    found, rejected = cdk_cli_install.find_cdk_cli(isolated / "project")
    assert found is not None and found.command == (str(on_path),) and found.source == "PATH"
    assert [(cli.version, cli.source) for cli in rejected] == [("2.100.0", "node_modules")]
    assert apps.cdk_cli(isolated / "project") == [str(on_path)]


def test_without_a_compatible_cli_the_pinned_one_is_installed_once_into_the_cache(
    isolated: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    calls = isolated / "npm-calls"
    fake_tool(isolated / "bin", "npm", FAKE_NPM.format(calls=calls, fail=""))
    fake_tool(isolated / "bin", "cdk", "#!/bin/sh\necho '3.0.1 (build x)'\n")  # a newer major on PATH
    project = isolated / "project"
    project.mkdir()

    command = apps.cdk_cli(project)
    prefix = isolated / "cache" / "cdk-cli" / cdk_cli_install.PINNED_VERSION
    assert command == ["node", str(prefix / "node_modules" / "aws-cdk" / "bin" / "cdk")]
    err = capfd.readouterr().err
    assert "the CDK CLI 3.0.1 (PATH" in err and "cannot read this package's cloud assemblies" in err
    assert f"installing the CDK CLI {cdk_cli_install.PINNED_VERSION} once into {prefix}" in err
    assert "added 1 package" in err  # npm's own progress reaches the terminal
    (call,) = calls.read_text().splitlines()
    assert call.split()[:2] == ["install", "--prefix"] and f"aws-cdk@{cdk_cli_install.PINNED_VERSION}" in call

    apps._CLI_CACHE.clear()  # a later command: found in the cache, npm not run again
    assert apps.cdk_cli(project) == command
    assert len(calls.read_text().splitlines()) == 1
    leftovers = sorted(p.name for p in (isolated / "cache" / "cdk-cli").iterdir() if not p.name.endswith(".lock"))
    assert leftovers == [cdk_cli_install.PINNED_VERSION]


def test_two_commands_starting_together_install_once(isolated: Path) -> None:
    calls = isolated / "npm-calls"
    fake_tool(isolated / "bin", "npm", FAKE_NPM.format(calls=calls, fail=""))
    results: list[cdk_cli_install.CdkCli] = []
    threads = [threading.Thread(target=lambda: results.append(cdk_cli_install.install_pinned_cli())) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(results) == 3 and len({cli.command for cli in results}) == 1
    assert len(calls.read_text().splitlines()) == 1


def test_a_failing_npm_names_the_exact_command_and_leaves_nothing_half_installed(isolated: Path) -> None:
    calls = isolated / "npm-calls"
    fake_tool(isolated / "bin", "npm", FAKE_NPM.format(calls=calls, fail="yes"))
    with pytest.raises(apps.ToolkitError) as raised:
        apps.cdk_cli(isolated)
    message = str(raised.value)
    assert "npm could not install aws-cdk@2.1148.1 (exit 1; offline?)" in message
    prefix = isolated / "cache" / "cdk-cli" / "2.1148.1"
    assert message.endswith(f"run npm install --prefix {prefix} aws-cdk@2.1148.1 --no-audit --no-fund")
    assert [p.name for p in prefix.parent.iterdir()] == [".2.1148.1.lock"]


def test_a_cdk_on_path_that_hangs_is_not_waited_for_forever(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_tool(isolated / "bin", "cdk", "#!/bin/sh\n/bin/sleep 30\necho 2.1148.1\n")
    monkeypatch.setattr(cdk_cli_install, "VERSION_TIMEOUT", 1.0)
    started = time.monotonic()
    found, rejected = cdk_cli_install.find_cdk_cli(isolated)
    assert found is None and rejected == []
    assert time.monotonic() - started < 10
