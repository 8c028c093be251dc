"""A bad setting stops start-up with one clear line that names the variable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run_check(**env: str) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "LOG_", "LLM_", "CHANNEL_"))}
    full_env.setdefault("DJANGO_SECRET_KEY", "x" * 50)
    full_env.update(env)
    full_env["DJANGO_SETTINGS_MODULE"] = "config.settings"
    return subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("MONGO__URL", "localhost:27017", "MONGO__URL must start with mongodb://"),
        ("DJANGO_DEBUG", "maybe", "DJANGO_DEBUG must be true or false"),
        ("LOG_LEVEL", "loud", "LOG_LEVEL must be one of"),
        ("LOG_FORMAT", "xml", "LOG_FORMAT must be one of"),
        ("MONGO__TIMEOUT_MS", "soon", "MONGO__TIMEOUT_MS must be a whole number"),
        ("LLM_CONTEXT_MESSAGES", "0", "LLM_CONTEXT_MESSAGES must be at least 1"),
        ("CHANNEL_READ_TIMEOUT_S", "fast", "CHANNEL_READ_TIMEOUT_S must be a number"),
        ("DJANGO_LANGUAGE_CODE", "xx", "DJANGO_LANGUAGE_CODE must be one of"),
    ],
)
def test_bad_value_stops_startup_with_one_line(variable: str, value: str, expected: str) -> None:
    result = run_check(**{variable: value})
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("configuration error: ")
    assert expected in lines[0]


def test_secret_key_required_outside_debug() -> None:
    if (ROOT / ".data" / "secret_key").exists():
        pytest.skip("this checkout has a local key made by `make run` in .data/secret_key")
    result = run_check(DJANGO_SECRET_KEY="")
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY must be set" in result.stderr
    assert run_check(DJANGO_SECRET_KEY="", DJANGO_DEBUG="true").returncode == 0


def test_good_settings_pass_the_check() -> None:
    result = run_check()
    assert result.returncode == 0, result.stderr
