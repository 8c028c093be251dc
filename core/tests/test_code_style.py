"""ruff (lint and format) over the whole project, as part of the suite."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def ruff() -> str:
    path = Path(sys.executable).with_name("ruff")
    if path.exists():
        return str(path)
    found = shutil.which("ruff")
    if not found:
        pytest.skip("ruff is not installed (it is in requirements-dev.txt)")
    return found


def test_ruff_check_is_clean() -> None:
    result = subprocess.run([ruff(), "check", "."], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_is_clean() -> None:
    result = subprocess.run([ruff(), "format", "--check", "."], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_is_clean() -> None:
    """mypy with django-stubs and djangorestframework-stubs over the application code
    (`check_untyped_defs`; settings in pyproject.toml)."""
    path = Path(sys.executable).with_name("mypy")
    if not path.exists():
        pytest.skip("mypy is not installed (it is in requirements-dev.txt)")
    result = subprocess.run([str(path)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
