"""Production settings, `.env` files and static files, checked in fresh processes started as a
deployment starts them (`manage.py ...` with `config.settings`, not the test settings)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SECRET_KEY = "kq3F0bq2m7Yt5v0cM1nW8zR4pL6sX9aD2eH7jU3oQ1gT5rE8wY2uI4oP6aS9dF1g"
ENCRYPTION_KEYS = "YS1wcm9kdWN0aW9uLWtleS1mb3ItdGhlLXRlc3RzISE="
PRODUCTION = {
    "DJANGO_SECRET_KEY": SECRET_KEY,
    "SECRETS_ENCRYPTION_KEYS": ENCRYPTION_KEYS,
    "DJANGO_ALLOWED_HOSTS": "chat.example.com",
    "DJANGO_CSRF_TRUSTED_ORIGINS": "https://chat.example.com",
    "DJANGO_SECURE_PROXY_SSL_HEADER": "X-Forwarded-Proto: https",
    "DJANGO_SECURE_SSL_REDIRECT": "true",
    "DJANGO_SECURE_HSTS_SECONDS": "31536000",
    "DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS": "true",
    "DJANGO_SECURE_HSTS_PRELOAD": "true",
    "LOG_FORMAT": "json",
}


def _env(tmp_path: Path, **values: str) -> dict[str, str]:
    """The machine's environment without any of the app's variables (the tests' own settings,
    a developer's .env), plus `values`."""
    names = set(re.findall(r"^# ([A-Z][A-Z0-9_]*)=", (ROOT / ".env.example").read_text(), re.M))
    env = {k: v for k, v in os.environ.items() if k not in names and not k.startswith("DJANGO_")}
    env.update(DJANGO_SETTINGS_MODULE="config.settings", DJANGO_ENV_FILE=str(tmp_path / "absent.env"))
    env.update(values)
    return env


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own interpreter and manage.py
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def _settings(env: dict[str, str], *names: str) -> dict[str, object]:
    code = (
        "import django, json; django.setup(); from django.conf import settings as s; "
        f"print(json.dumps({{n: getattr(s, n, None) for n in {list(names)!r}}}, default=str))"
    )
    result = _run(env, "-c", code)
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def test_check_deploy_is_clean_with_production_settings(tmp_path: Path) -> None:
    result = _run(_env(tmp_path, **PRODUCTION), "manage.py", "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout
    assert "WARNING" not in result.stdout + result.stderr


def test_check_deploy_names_what_a_plain_http_set_up_lacks(tmp_path: Path) -> None:
    env = _env(
        tmp_path,
        DJANGO_SECRET_KEY=SECRET_KEY,
        SECRETS_ENCRYPTION_KEYS=ENCRYPTION_KEYS,
        DJANGO_ALLOWED_HOSTS="chat.example.com",
    )
    result = _run(env, "manage.py", "check", "--deploy")
    for warning in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert warning in result.stderr + result.stdout


def test_production_settings(tmp_path: Path) -> None:
    values = _settings(
        _env(tmp_path, **PRODUCTION),
        "DEBUG",
        "SECURE_PROXY_SSL_HEADER",
        "SESSION_COOKIE_SECURE",
        "CSRF_COOKIE_SECURE",
        "SECURE_HSTS_SECONDS",
        "STATIC_ROOT",
        "STORAGES",
    )
    assert values["DEBUG"] is False
    assert values["SECURE_PROXY_SSL_HEADER"] == ["HTTP_X_FORWARDED_PROTO", "https"]
    assert values["SESSION_COOKIE_SECURE"] is True and values["CSRF_COOKIE_SECURE"] is True
    assert values["SECURE_HSTS_SECONDS"] == 31536000
    assert values["STATIC_ROOT"] == str(ROOT / "staticfiles")  # set, whether or not it exists yet
    storages = values["STORAGES"]
    assert isinstance(storages, dict)
    assert storages["staticfiles"]["BACKEND"] == "core.staticfiles.CompressedManifestStorage"


def test_a_malformed_proxy_header_stops_start_up_naming_the_variable(tmp_path: Path) -> None:
    result = _run(_env(tmp_path, **{**PRODUCTION, "DJANGO_SECURE_PROXY_SSL_HEADER": "https"}), "manage.py", "check")
    assert result.returncode != 0
    assert "DJANGO_SECURE_PROXY_SSL_HEADER" in result.stderr


@pytest.mark.slow
def test_collectstatic_writes_compressed_hashed_files_that_pages_then_name(tmp_path: Path) -> None:
    env = _env(tmp_path, **PRODUCTION, DJANGO_STATIC_ROOT=str(tmp_path / "static"))
    code = (
        "import django; django.setup(); from django.templatetags.static import static; "
        "print(static('admin/css/base.css'))"
    )
    # Before collectstatic: the plain name, which WhiteNoise serves from the app's folder.
    assert _run(env, "-c", code).stdout.strip() == "/static/admin/css/base.css"

    result = _run(env, "manage.py", "collectstatic", "--no-input")
    assert result.returncode == 0, result.stderr

    hashed = _run(env, "-c", code).stdout.strip()
    assert re.fullmatch(r"/static/admin/css/base\.[0-9a-f]{12}\.css", hashed)
    assert (tmp_path / "static" / hashed.removeprefix("/static/")).is_file()
    assert (tmp_path / "static" / (hashed.removeprefix("/static/") + ".gz")).is_file()
    assert (tmp_path / "static" / "staticfiles.json").is_file()


def test_the_env_file_is_read_with_comments_and_the_real_environment_wins(tmp_path: Path) -> None:
    env_file = tmp_path / "app.env"
    env_file.write_text(
        "DJANGO_LANGUAGE_CODE=ru   # Russian admin labels\n"
        "export WORKER_THREADS=7\n"
        "CHANNEL_AUTH_HEADER='X-Chat-Auth-Token'  # behind nginx\n"
        'LLM_MODEL="llama # 3"\n'
        "WORKER_POLL_MS=40\n"
    )
    env = _env(tmp_path, **PRODUCTION, DJANGO_ENV_FILE=str(env_file), WORKER_POLL_MS="50")
    values = _settings(env, "LANGUAGE_CODE", "WORKER_THREADS", "CHANNEL_AUTH_HEADER", "LLM_MODEL", "WORKER_POLL_MS")
    assert values == {
        "LANGUAGE_CODE": "ru",
        "WORKER_THREADS": 7,
        "CHANNEL_AUTH_HEADER": "X-Chat-Auth-Token",
        "LLM_MODEL": "llama # 3",
        "WORKER_POLL_MS": 50,  # the real environment wins
    }


def test_every_line_of_env_example_works_uncommented(tmp_path: Path) -> None:
    """`.env.example`'s lines, comments and all, uncommented as a user would."""
    lines = (ROOT / ".env.example").read_text().splitlines()
    uncommented = [line[2:] for line in lines if re.match(r"^# [A-Z][A-Z0-9_]*=", line)]
    assert len(uncommented) > 50
    env_file = tmp_path / "example.env"
    env_file.write_text("\n".join(uncommented) + "\n")
    env = _env(tmp_path, DJANGO_ENV_FILE=str(env_file))

    result = _run(env, "manage.py", "check")
    assert result.returncode == 0, result.stderr

    values = _settings(
        env, "CHANNEL_AUTH_HEADER", "MONGO_TIMEOUT_MS", "ALLOWED_HOSTS", "SECURE_PROXY_SSL_HEADER", "LOG_LEVEL"
    )
    assert values == {
        "CHANNEL_AUTH_HEADER": "x-chat_auth_token",
        "MONGO_TIMEOUT_MS": 3000,
        "ALLOWED_HOSTS": ["localhost", "127.0.0.1", "[::1]"],
        "SECURE_PROXY_SSL_HEADER": ["HTTP_X_FORWARDED_PROTO", "https"],
        "LOG_LEVEL": "INFO",
    }


def test_env_example_documents_every_variable() -> None:
    documented = set(re.findall(r"^# ([A-Z][A-Z0-9_]*)=", (ROOT / ".env.example").read_text(), re.M))
    read: set[str] = set()
    for path in (ROOT / "config" / "settings.py", ROOT / "devtools" / "run.py", ROOT / "deploy" / "gunicorn.conf.py"):
        if path.is_file():
            text = path.read_text()
            read |= set(re.findall(r"\benv_[a-z_]+\(\s*\"([A-Z][A-Z0-9_]*)\"", text))
            read |= set(re.findall(r"environ(?:\.get)?[\[(]\s*\"([A-Z][A-Z0-9_]*)\"", text))
            read |= set(re.findall(r"_positive_int\(\s*[\"']([A-Z][A-Z0-9_]*)[\"']", text))
            read |= set(re.findall(r"positive_int_env\(\s*\"([A-Z][A-Z0-9_]*)\"", text))
    assert {"DJANGO_SECRET_KEY", "MONGO_URL", "PORT", "SERVER_THREADS"} <= read
    assert read - documented == set()
