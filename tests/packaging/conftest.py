"""The wheel and a venv with it installed, once per test session (see wheel_venv.py for how)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from wheel_venv import WheelVenv, session_venv, session_wheel


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built from this checkout."""
    return session_wheel(tmp_path_factory)


@pytest.fixture(scope="session")
def installed_wheel(tmp_path_factory: pytest.TempPathFactory) -> WheelVenv:
    """A fresh venv outside the checkout with the wheel installed (dependencies from the dev venv)."""
    return session_venv(tmp_path_factory)
