"""`/` leads to the operators' inbox in the admin; `/api/` lists the endpoints and the docs, without getting in the
way of the routes below it."""

from __future__ import annotations

import gzip
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient


def test_root_redirects_to_the_operators_inbox(client: Client) -> None:
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"] == "/admin/inbox/"


def test_api_root_lists_the_endpoints_and_the_docs_to_anyone(client: Client) -> None:
    response = client.get("/api/", HTTP_ACCEPT="application/json", HTTP_HOST="bots.example.com")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/json")
    base = "http://bots.example.com"
    assert response.json() == {
        "chatbots": f"{base}/api/chatbots/",
        "channels": f"{base}/api/channels/",
        "dialogues": f"{base}/api/dialogues/",
        "webhook": f"{base}/api/webhook/new_message",
        "schema": f"{base}/api/schema/",
        "docs": f"{base}/api/docs/",
        "redoc": f"{base}/api/redoc/",
        "admin": f"{base}/admin/",
    }


def test_api_root_touches_no_database(client: Client) -> None:
    # No django_db mark: any database access (a session, a user) would raise here.
    response = client.get("/api/", HTTP_AUTHORIZATION="Token whatever", HTTP_COOKIE="sessionid=abc")
    assert response.status_code == 200


def test_api_root_answers_get_only(client: Client) -> None:
    assert client.post("/api/").status_code == 405


@pytest.mark.django_db
def test_the_routes_below_the_api_root_still_answer(api_client: APIClient, anon_client: APIClient) -> None:
    assert reverse("api-root") == "/api/"
    for path in ("/api/chatbots/", "/api/chatbots", "/api/channels/", "/api/channels", "/api/dialogues/"):
        assert api_client.get(path).status_code == 200, path
        assert anon_client.get(path).status_code == 401, path
    assert anon_client.post("/api/webhook/new_message", {}, format="json").status_code == 401
    assert anon_client.get("/api/schema/").status_code == 200
    assert anon_client.get("/api/docs/").status_code == 200
    assert anon_client.get("/api/redoc/").status_code == 200
    assert anon_client.get("/api/no-such-thing/").status_code == 404


@pytest.mark.parametrize("path", ["/api/docs/", "/api/redoc/"])
def test_docs_pages_name_no_other_host(client: Client, path: str) -> None:
    """Scripts, styles, icons from this server (drf-spectacular-sidecar); ReDoc without the
    Google Fonts drf-spectacular's template links. The browser test checks what is fetched."""
    page = client.get(path).content.decode()
    assert "/static/drf_spectacular_sidecar/" in page or '<script src="/api/redoc/redoc.standalone.js">' in page
    assert "fonts.googleapis.com" not in page
    assert "https://" not in page and "http://" not in page


def test_redoc_page_keeps_the_browser_on_this_server(client: Client) -> None:
    page = client.get("/api/redoc/").content.decode()
    assert '<meta http-equiv="Content-Security-Policy" content="default-src \'self\';' in page
    assert "img-src 'self' data: blob:;" in page


def test_redoc_script_names_no_other_host_to_load(client: Client) -> None:
    """ReDoc's sidebar logo came from cdn.redoc.ly: its address is taken out of the bundle."""
    response = client.get("/api/redoc/redoc.standalone.js")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/javascript")
    script = response.content
    assert b"Redoc" in script and len(script) > 100_000
    assert b"cdn.redoc.ly" not in script
    compressed = client.get("/api/redoc/redoc.standalone.js", headers={"Accept-Encoding": "gzip"})
    assert compressed["Content-Encoding"] == "gzip" and gzip.decompress(compressed.content) == script
    again = client.get("/api/redoc/redoc.standalone.js", headers={"If-None-Match": response["ETag"]})
    assert again.status_code == 304


def test_favicon_is_served_at_the_site_root(client: Client) -> None:
    # No django_db mark: a browser asks for it on every page, the database never answers it.
    response = client.get("/favicon.ico")
    assert response.status_code == 200
    assert response["Content-Type"] == "image/x-icon"
    assert response.content[:4] == b"\x00\x00\x01\x00"  # the ICO header


@pytest.mark.django_db
def test_the_admin_links_its_icon(client: Client, staff_user: Any) -> None:
    client.force_login(staff_user)
    page = client.get("/admin/").content.decode()
    assert '<link rel="icon" href="/static/core/favicon.svg"' in page
    assert client.get("/static/core/favicon.svg").status_code == 200
