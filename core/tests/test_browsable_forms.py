"""The browsable API draws real forms for creating bots and channels."""

from __future__ import annotations

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("path", "fields"),
    [("/api/channels/", ["name", "chat_bot_id", "url", "is_active"]), ("/api/chatbots/", ["name", "system_prompt"])],
)
def test_the_create_form_has_the_fields_a_create_takes(admin_client: Client, path: str, fields: list[str]) -> None:
    response = admin_client.get(path, HTTP_ACCEPT="text/html")
    assert response.status_code == 200
    page = response.content.decode()
    form = page[page.index('id="post-generic-content-form"') :] if 'id="post-generic-content-form"' in page else page
    for field in fields:
        assert f'name="{field}"' in page, field
    # The raw-data form starts from the fields too, not from `{}`.
    assert '"name": ""' in form or "&quot;name&quot;: &quot;&quot;" in form
