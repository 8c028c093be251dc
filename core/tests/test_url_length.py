"""An over-long URL is answered by the app, as JSON in the API's error shape (414), before any
view or the database sees it; gunicorn's own limit lies above the app's."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests
from django.test import Client

from core.middleware import MAX_URL_BYTES, URL_TOO_LONG
from devtools.run import gunicorn_command
from tests.support.live_server import LiveServer


def _url(length: int) -> str:
    base = "/api/channels/?chat_bot_id="
    return base + "a" * (length - len(base))


@pytest.mark.django_db
def test_a_url_over_the_limit_is_a_json_414(client: Client) -> None:
    response = client.get(_url(MAX_URL_BYTES + 1))
    assert response.status_code == 414
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"detail": URL_TOO_LONG}
    assert response["X-Request-ID"]


@pytest.mark.django_db
def test_a_url_at_the_limit_reaches_the_view(client: Client) -> None:
    # Unauthenticated: the view's own answer, not the 414.
    assert client.get(_url(MAX_URL_BYTES)).status_code == 401


def test_gunicorn_accepts_request_lines_longer_than_the_apps_limit() -> None:
    # The configuration every server runs with (make run, the tests, deploy/).
    command = gunicorn_command(bind="127.0.0.1:0", workers="1", threads="1")
    path = Path(command[command.index("-c") + 1])
    config: dict[str, object] = {"__file__": str(path.resolve())}  # as gunicorn loads it
    exec(path.read_text(), config)  # noqa: S102 - our own file
    assert int(str(config["limit_request_line"])) > MAX_URL_BYTES + len("DELETE  HTTP/1.1") + 100


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_through_gunicorn_a_long_query_string_gets_the_json_414(live_server_process: LiveServer) -> None:
    url = live_server_process.url
    for length in (MAX_URL_BYTES + 1, 8000):
        response = requests.get(url + _url(length), timeout=30)
        assert response.status_code == 414, length
        assert response.headers["Content-Type"] == "application/json"
        assert response.json() == {"detail": URL_TOO_LONG}
    # Past gunicorn's hard maximum (8190 bytes per request line) only gunicorn can answer.
    assert requests.get(url + _url(9000), timeout=30).status_code in (400, 414)


@pytest.mark.django_db
def test_a_body_over_the_limit_is_a_json_413_not_a_500(admin_user) -> None:  # type: ignore[no-untyped-def]
    from rest_framework.test import APIClient

    client = APIClient()
    client.force_authenticate(admin_user)
    body = '{"name": "' + "x" * 3_000_000 + '"}'
    response = client.generic("POST", "/api/chatbots/", body, content_type="application/json")
    assert response.status_code == 413
    assert response.json() == {"detail": "Request body too large."}
