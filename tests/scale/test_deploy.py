"""The files users copy from deploy/ are the ones the project runs and tests."""

from __future__ import annotations

import http.client
import json
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings

from channels_app.tests.factories import ChannelFactory
from chatbots.tests.factories import ChatBotFactory
from devtools.embedded_mongo import free_port
from devtools.run import gunicorn_command
from scale.__main__ import nginx_binary
from tests.support.live_server import LiveServer, terminate

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


def test_gunicorn_workers_hand_over_the_gil_every_half_millisecond() -> None:
    """Each worker process (after the fork) switches threads every SERVER_SWITCH_INTERVAL_US:
    500 by default, 5,000 in Python."""
    import runpy

    before = sys.getswitchinterval()
    try:
        runpy.run_path(str(DEPLOY / "gunicorn.conf.py"))["post_fork"](None, None)
        assert sys.getswitchinterval() == pytest.approx(0.0005)
    finally:
        sys.setswitchinterval(before)


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


# --- the client's address behind nginx -------------------------------------------------


def env_file_values() -> dict[str, str]:
    return dict(re.findall(r"^([A-Z][A-Z0-9_]+)=(.*)$", (DEPLOY / "chatbots.env").read_text(), re.M))


def nginx_server_headers() -> dict[str, str]:
    """The `proxy_set_header` lines of nginx.conf's server block, by lower-cased header name."""
    text = re.sub(r"#.*", "", (DEPLOY / "nginx.conf").read_text())
    return {name.lower(): value for name, value in re.findall(r"^\s*proxy_set_header\s+(\S+)\s+(.+?);", text, re.M)}


def test_nginx_sets_the_client_address_header_the_app_is_told_to_read() -> None:
    header = env_file_values().get("RATE_LIMIT_CLIENT_IP_HEADER", "")
    assert header, "deploy/chatbots.env must name the header nginx sets (RATE_LIMIT_CLIENT_IP_HEADER)"
    headers = nginx_server_headers()
    # Replaced by nginx's own view of the client, never appended to what the client sent.
    assert headers.get(header.lower()) == "$remote_addr"
    assert headers.get("x-forwarded-for") == "$remote_addr"
    # nginx gives a `location` the server's proxy_set_header lines only if it sets none itself.
    text = re.sub(r"#.*", "", (DEPLOY / "nginx.conf").read_text())
    for location in re.findall(r"location\s[^{]*\{([^}]*)\}", text):
        assert "proxy_set_header" not in location


@pytest.fixture
def nginx_in_front(tmp_path: Path, django_db_setup: object) -> Iterator[tuple[int, LiveServer]]:
    """gunicorn with deploy/chatbots.env's RATE_LIMIT_CLIENT_IP_HEADER and a low limit on failed
    webhook authentications, behind nginx running deploy/nginx.conf (only its `listen` moved to
    a free port on 127.0.0.1)."""
    binary = nginx_binary()
    assert binary is not None
    header = env_file_values()["RATE_LIMIT_CLIENT_IP_HEADER"]
    app = LiveServer(
        db_name=settings.DATABASES["default"]["NAME"],
        env={"RATE_LIMIT_CLIENT_IP_HEADER": header, "WEBHOOK_AUTH_FAILURE_RATE": "3/hour"},
    ).start()
    port = free_port()
    shipped = (DEPLOY / "nginx.conf").read_text()
    site, count = re.subn(r"^(\s*)listen 80;", rf"\1listen 127.0.0.1:{port};", shipped, flags=re.M)
    assert count == 1
    (tmp_path / "site.conf").write_text(site)
    (tmp_path / "chatbots-upstream.conf").write_text(f"server 127.0.0.1:{app.port};\n")
    (tmp_path / "nginx.conf").write_text(
        f"daemon off; user root; worker_processes 1; pid {tmp_path}/nginx.pid; error_log {tmp_path}/error.log;\n"
        f"events {{}}\nhttp {{ access_log off; client_body_temp_path {tmp_path}/b; proxy_temp_path {tmp_path}/p;\n"
        f"  include {tmp_path}/site.conf; }}\n"
    )
    nginx = subprocess.Popen([binary, "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert nginx.poll() is None and time.monotonic() < deadline, (tmp_path / "error.log").read_text()
                time.sleep(0.05)
        yield port, app
    finally:
        terminate(nginx)
        app.stop()


def webhook_from(port: int, source: str, secret: str, chat_id: str, message_id: str) -> int:
    """A webhook POST to nginx from the address `source` (any 127.x.y.z is this machine)."""
    body = json.dumps({"message_id": message_id, "chat_id": chat_id, "text": "Hi", "message_sender": "customer"})
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30, source_address=(source, 0))
    try:
        connection.request("POST", "/api/webhook/new_message", body=body, headers={
            "Content-Type": "application/json", "x-chatbot_auth_token": f"Bearer {secret}",
            # A client cannot pick its own counter: nginx replaces both.
            "X-Real-IP": "198.51.100.1", "X-Forwarded-For": "198.51.100.1"})  # fmt: skip
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


@pytest.mark.skipif(nginx_binary() is None, reason="nginx is not installed (scripts/install-nginx)")
@pytest.mark.django_db(transaction=True)
def test_two_clients_behind_the_shipped_nginx_have_separate_rate_limits(
    nginx_in_front: tuple[int, LiveServer],
) -> None:
    port, _app = nginx_in_front
    bot = ChatBotFactory()
    chat_id = str(ChannelFactory(chat_bot=bot).pk)

    attacker = [webhook_from(port, "127.0.0.2", "cbs_wrong", chat_id, f"bad-{i}") for i in range(4)]
    assert attacker == [401, 401, 401, 429]
    # Another client, through the same nginx, with the right secret: not refused.
    assert webhook_from(port, "127.0.0.3", bot.plain_secret, chat_id, "good-1") == 200
    # The attacker stays refused, even with the right secret (its address is over the limit).
    assert webhook_from(port, "127.0.0.2", bot.plain_secret, chat_id, "good-2") == 429
