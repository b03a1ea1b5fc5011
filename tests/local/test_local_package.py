"""The package's shape: lazy exports, no moto or CDK on import, the moto_bridge re-exports."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import cdk_serverless_patterns.local as local

LOCAL = Path(local.__file__).parent


def _modules_after(statement: str) -> set[str]:
    code = f"import json, sys\n{statement}\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return set(json.loads(out))


def _heavy(modules: set[str]) -> set[str]:
    return {m for m in modules if m.split(".")[0] in {"moto", "aws_cdk", "boto3", "botocore", "jsii"}}


def test_importing_the_package_imports_neither_moto_nor_the_cdk() -> None:
    assert _heavy(_modules_after("import cdk_serverless_patterns.local")) == set()


def test_importing_moto_bridge_and_patches_imports_no_moto() -> None:
    statement = "from cdk_serverless_patterns.local import moto_bridge, patches, deploy, ttl"
    assert _heavy(_modules_after(statement)) == set()


def test_nothing_in_local_imports_the_cdk() -> None:
    for path in sorted(LOCAL.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            assert not any(name.split(".")[0] in {"aws_cdk", "constructs"} for name in names), (path, names)


def test_lazy_exports_resolve() -> None:
    from cdk_serverless_patterns.local import deploy, in_process, server, ttl
    from cdk_serverless_patterns.local.patches import aws_sdk_parameters

    assert local.emulator is in_process.emulator
    assert local.Emulator is in_process.Emulator
    assert local.deploy_template is deploy.deploy_template
    assert local.Deployment is deploy.Deployment
    assert local.ACCOUNT == deploy.ACCOUNT == "123456789012"
    assert local.expire_items is ttl.expire_items
    assert local.route_aws_sdk is aws_sdk_parameters.route_aws_sdk
    assert local.MotoServer is server.MotoServer
    assert set(local.__all__) <= set(dir(local))


def test_moto_bridge_re_exports_the_old_names() -> None:
    from cdk_serverless_patterns.local import deploy, moto_bridge, patches, ttl
    from cdk_serverless_patterns.local.patches import aws_sdk_parameters

    assert moto_bridge.install is patches.install
    assert moto_bridge.deploy_template is deploy.deploy_template
    assert moto_bridge.Deployment is deploy.Deployment
    assert moto_bridge.ACCOUNT == "123456789012"
    assert moto_bridge.expire_items is ttl.expire_items
    assert moto_bridge.route_aws_sdk is aws_sdk_parameters.route_aws_sdk
    assert "compatibility" in (moto_bridge.__doc__ or "")
