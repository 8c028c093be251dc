"""The files users copy from deploy/ are the ones the project runs and tests."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from devtools.run import gunicorn_command
from scale.__main__ import nginx_binary

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def test_make_run_serves_with_the_shipped_gunicorn_configuration() -> None:
    command = gunicorn_command()
    assert command[command.index("-c") + 1] == "deploy/gunicorn.conf.py"
    check = subprocess.run([*command, "--check-config"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stderr


def test_gunicorn_configuration_refuses_a_bad_number_clearly() -> None:
    check = subprocess.run(
        [str(Path(sys.executable).with_name("gunicorn")), "-c", "deploy/gunicorn.conf.py", "--check-config",
         "config.wsgi:application"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin", "SERVER_WORKERS": "two"},
    )  # fmt: skip
    assert check.returncode != 0
    assert "SERVER_WORKERS must be a whole number" in check.stdout + check.stderr


@pytest.mark.skipif(nginx_binary() is None, reason="nginx is not installed (scripts/install-nginx)")
def test_nginx_configuration_is_valid_and_keeps_the_auth_header(tmp_path: Path) -> None:
    text = (DEPLOY / "nginx.conf").read_text()
    assert re.search(r"^\s*underscores_in_headers on;", text, re.M)
    webhook = text[text.index("location /api/webhook/") :].split("}", 1)[0]
    assert "non_idempotent" in webhook and "proxy_next_upstream" in webhook
    (tmp_path / "chatbots-upstream.conf").write_text("server 127.0.0.1:8000;\n")
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid; error_log {tmp_path}/error.log; events {{}}\n"
        f"http {{ access_log off; client_body_temp_path {tmp_path}/b; proxy_temp_path {tmp_path}/p;\n"
        f"  include {DEPLOY}/nginx.conf; }}\n"
    )
    binary = nginx_binary()
    assert binary is not None
    check = subprocess.run([binary, "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
                           capture_output=True, text=True, timeout=30)  # fmt: skip
    assert check.returncode == 0, check.stderr


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
@pytest.mark.parametrize("unit", ["chatbots-web.service", "chatbots-worker.service"])
def test_systemd_units_verify(unit: str, tmp_path: Path) -> None:
    """`systemd-analyze verify` on the unit as shipped, with its paths pointed at this checkout
    (it checks that the commands exist) and its user at one that exists here."""
    env_file = tmp_path / "chatbots.env"
    shutil.copy(DEPLOY / "chatbots.env", env_file)
    text = (DEPLOY / "systemd" / unit).read_text()
    text = text.replace("/srv/chatbots", str(ROOT)).replace("/etc/chatbots/chatbots.env", str(env_file))
    text = re.sub(r"^(User|Group)=chatbots$", r"\1=root", text, flags=re.M)
    path = tmp_path / unit
    path.write_text(text)
    check = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True, text=True, timeout=60)
    problems = [line for line in (check.stdout + check.stderr).splitlines() if unit in line]
    assert check.returncode == 0 and not problems, check.stdout + check.stderr


def test_the_environment_template_names_only_settings_the_app_reads() -> None:
    names = re.findall(r"^([A-Z][A-Z0-9_]+)=", (DEPLOY / "chatbots.env").read_text(), re.M)
    known = (ROOT / "config" / "settings.py").read_text() + (DEPLOY / "gunicorn.conf.py").read_text()
    assert names and [name for name in names if f'"{name}"' not in known and f"'{name}'" not in known] == []
