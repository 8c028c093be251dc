from __future__ import annotations

import re
from io import StringIO
from pathlib import Path

import pytest
import yaml
from django.core.management import call_command
from django.test import Client


def test_schema_validates_without_warnings(tmp_path: Path) -> None:
    # `manage.py spectacular --validate --fail-on-warn`: raises on any warning or error.
    target = tmp_path / "schema.yaml"
    call_command("spectacular", validate=True, fail_on_warn=True, file=str(target), stdout=StringIO())
    schema = yaml.safe_load(target.read_text())
    paths = schema["paths"]
    for path in [
        "/api/chatbots/",
        "/api/chatbots/{id}/",
        "/api/chatbots/{id}/rotate_token/",
        "/api/channels/",
        "/api/channels/{id}/",
        "/api/channels/{id}/dialogue/",
        "/api/channels/{id}/rotate_token/",
        "/api/dialogues/",
        "/api/dialogues/{id}/",
        "/api/dialogues/{id}/messages/",
    ]:
        assert path in paths, path
    assert schema["components"]["securitySchemes"]["tokenAuth"]["name"] == "Authorization"
    create = paths["/api/channels/"]["post"]
    assert create["requestBody"]["content"]["application/json"]["examples"]
    assert set(create["responses"]) >= {"201", "400", "401", "403"}
    assert create["responses"]["201"]["content"]["application/json"]["examples"]
    # ObjectIds are documented as strings, not the integers DRF would infer.
    channel = schema["components"]["schemas"]["Channel"]["properties"]
    assert channel["id"]["type"] == "string" and channel["chat_bot_id"]["pattern"] == "^[0-9a-fA-F]{24}$"
    keys = {"id", "name", "chat_bot_id", "url", "kind", "options", "is_active", "typing_events", "token"}
    assert set(channel) == keys
    detail = paths["/api/channels/{id}/"]["get"]
    assert {p["name"]: p["schema"]["type"] for p in detail["parameters"]}["id"] == "string"
    assert "404" in detail["responses"]


@pytest.mark.django_db
def test_schema_endpoint_serves_json(client: Client) -> None:
    response = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    assert "/api/channels/" in response.json()["paths"]


@pytest.mark.django_db
@pytest.mark.parametrize("page", ["/api/docs/", "/api/redoc/"])
def test_docs_ui_loads_its_assets_from_the_app(client: Client, page: str) -> None:
    response = client.get(page)
    assert response.status_code == 200
    html = response.content.decode()
    assets = re.findall(r"""(?:src|href)=["']([^"']+\.(?:js|css|png))["']""", html)
    assert assets, html
    for asset in assets:
        # No CDN: deployments are often offline. (ReDoc's script is served by core.redoc.)
        assert asset.startswith("/static/") or asset == "/api/redoc/redoc.standalone.js", asset
        assert client.get(asset).status_code == 200, asset
    assert "cdn" not in html.lower()


@pytest.mark.django_db
def test_docs_shortcut_redirects_to_swagger(client: Client) -> None:
    response = client.get("/docs")
    assert response.status_code == 302
    assert response["Location"] == "/api/docs/"
