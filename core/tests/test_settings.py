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
    if any(key.startswith("MONGO") for key in env):
        full_env = {k: v for k, v in full_env.items() if not k.startswith("MONGO")}
    full_env.setdefault("DJANGO_SECRET_KEY", "x" * 50)
    full_env.update(env)
    full_env["DJANGO_SETTINGS_MODULE"] = "config.settings"
    return subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("MONGO_URL", "localhost:27017", "MONGO_URL must start with mongodb://"),
        # An old name still works, and its error names it.
        ("MONGO__URL", "localhost:27017", "MONGO__URL (now named MONGO_URL) must start with mongodb://"),
        ("DJANGO_DEBUG", "maybe", "DJANGO_DEBUG must be true or false"),
        ("LOG_LEVEL", "loud", "LOG_LEVEL must be one of"),
        ("LOG_FORMAT", "xml", "LOG_FORMAT must be one of"),
        ("MONGO_TIMEOUT_MS", "soon", "MONGO_TIMEOUT_MS must be a whole number"),
        ("LLM_CONTEXT_MESSAGES", "0", "LLM_CONTEXT_MESSAGES must be at least 1"),
        (
            "CHANNEL_READ_TIMEOUT_S",
            "fast",
            "CHANNEL_READ_TIMEOUT_S (now named CHANNEL_ATTEMPT_TIMEOUT_S) must be a number",
        ),
        ("DJANGO_LANGUAGE_CODE", "xx", "DJANGO_LANGUAGE_CODE must be one of"),
        (
            "SECRETS_ENCRYPTION_KEYS",
            "not-a-fernet-key",
            "SECRETS_ENCRYPTION_KEYS must hold comma-separated Fernet keys",
        ),
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


def test_encryption_keys_required_outside_debug() -> None:
    if (ROOT / ".data" / "secrets_encryption_keys").exists():
        pytest.skip("this checkout has a local key made by `make run` in .data/secrets_encryption_keys")
    result = run_check(SECRETS_ENCRYPTION_KEYS="")
    assert result.returncode != 0
    assert result.stderr.strip() == (
        "configuration error: SECRETS_ENCRYPTION_KEYS must be set (or DJANGO_DEBUG=true for development)"
    )
    assert run_check(SECRETS_ENCRYPTION_KEYS="", DJANGO_DEBUG="true").returncode == 0


def test_good_settings_pass_the_check() -> None:
    result = run_check()
    assert result.returncode == 0, result.stderr


def settings_seen(**env: str) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "MONGO", "TIME_ZONE"))}
    full_env.update(DJANGO_SECRET_KEY="x" * 50, DJANGO_SETTINGS_MODULE="config.settings", **env)
    code = "from django.conf import settings as s; print(s.MONGO_URL, s.MONGO_TIMEOUT_MS, s.TIME_ZONE)"
    return subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); {code}"],
        cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_old_names_still_work_and_never_disagree_with_the_new() -> None:
    old = settings_seen(MONGO__URL="mongodb://db:1", MONGO__TIMEOUT_MS="150", TIME_ZONE="Europe/Moscow")
    assert old.stdout.split() == ["mongodb://db:1", "150", "Europe/Moscow"], old.stderr
    new = settings_seen(MONGO_URL="mongodb://db:2", MONGO_TIMEOUT_MS="160", DJANGO_TIME_ZONE="Asia/Tokyo")
    assert new.stdout.split() == ["mongodb://db:2", "160", "Asia/Tokyo"], new.stderr
    same = settings_seen(MONGO_URL="mongodb://db:3", MONGO__URL="mongodb://db:3")
    assert same.stdout.split()[0] == "mongodb://db:3", same.stderr
    both = run_check(MONGO_URL="mongodb://a:1", MONGO__URL="mongodb://b:1")
    assert both.returncode != 0
    assert both.stderr.strip().splitlines() == [
        "configuration error: MONGO_URL and MONGO__URL are the same setting (the second is its old name) "
        "and differ: set one"
    ]
