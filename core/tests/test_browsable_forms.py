"""The browsable API draws real forms for creating and updating bots and channels, and what
those forms send (every value a string) is read as the JSON it stands for. And the API docs
beside it say who wrote a message in the admin's words: the customer, a bot reply, an employee."""

from __future__ import annotations

import html
import json
import re
from typing import Any

import pytest
from django.test import Client
from django.test.client import BOUNDARY, MULTIPART_CONTENT, encode_multipart
from drf_spectacular.generators import SchemaGenerator

from channels_app.models import Channel
from channels_app.tests.factories import ChannelFactory
from chatbots.models import ChatBot
from chatbots.tests.factories import ChatBotFactory

pytestmark = pytest.mark.django_db


def html_page(client: Client, path: str) -> str:
    response = client.get(path, HTTP_ACCEPT="text/html")
    assert response.status_code == 200
    return response.content.decode()


def form(page: str, method: str) -> str:
    """The HTML form (not Raw data) for `method`."""
    start = page.index(f'method="{method}" enctype="multipart/form-data"')
    return page[start : page.index("</form>", start)]


def raw_data(page: str, method: str) -> dict[str, Any]:
    """The "Raw data" form's starting content for `method` (the last form with that method)."""
    start = page.rindex(f'data-method="{method}" class="form-horizontal"')
    match = re.search(r'id="id__content"[^>]*>(.*?)</textarea>', page[start:], re.S)
    assert match is not None
    return json.loads(html.unescape(match.group(1)))


def input_value(form_html: str, name: str) -> str | None:
    match = re.search(rf'<input name="{name}"[^>]*value="([^"]*)"', form_html)
    return html.unescape(match.group(1)) if match else None


def multipart(data: dict[str, Any]) -> bytes:
    return encode_multipart(BOUNDARY, data)


@pytest.mark.parametrize(
    ("path", "fields"),
    [("/api/channels/", ["name", "chat_bot_id", "url", "is_active"]), ("/api/chatbots/", ["name", "system_prompt"])],
)
def test_the_create_form_has_the_fields_a_create_takes(admin_client: Client, path: str, fields: list[str]) -> None:
    page = html_page(admin_client, path)
    post_form = page[page.index('id="post-generic-content-form"') :]
    for field in fields:
        assert f'name="{field}"' in page, field
    if path == "/api/channels/":
        # Ticked, as a channel created without `is_active` is active.
        assert re.search(r'name="is_active" value="true"\s+checked', form(page, "POST"))
    # The raw-data form starts from the fields too, not from `{}`.
    assert "&quot;name&quot;: &quot;&quot;" in post_form


def test_the_channel_create_form_offers_the_bots_by_name(admin_client: Client) -> None:
    support = ChatBotFactory(name="Support <desk>")
    sales = ChatBotFactory(name="Sales desk")
    page = html_page(admin_client, "/api/channels/")
    select = re.search(r'<select class="form-control" name="chat_bot_id">(.*?)</select>', page, re.S)
    assert select is not None
    options = re.findall(r'<option value="([0-9a-f]{24})"\s*>([^<]*)</option>', select.group(1))
    # By name, escaped, each with its id.
    assert options == [
        (str(sales.pk), f"Sales desk ({sales.pk})"),
        (str(support.pk), f"Support &lt;desk&gt; ({support.pk})"),
    ]


def test_the_channel_update_forms_start_from_its_current_values(admin_client: Client) -> None:
    bot = ChatBotFactory()
    channel = ChannelFactory(chat_bot=bot, name="Web chat", url="https://chat.example.com/hook")
    page = html_page(admin_client, f"/api/channels/{channel.pk}/")
    put_form = form(page, "PUT")
    assert input_value(put_form, "name") == "Web chat"
    assert input_value(put_form, "url") == "https://chat.example.com/hook"
    assert re.search(r'name="is_active" value="true"\s+checked', put_form)
    assert input_value(put_form, "chat_bot_id") == str(bot.pk)
    # Raw data: what a PUT takes, with the current values; not the token or the id.
    assert raw_data(page, "PUT") == {
        "name": "Web chat",
        "url": "https://chat.example.com/hook",
        "is_active": True,
        "typing_events": False,
        "chat_bot_id": str(bot.pk),
    }


def test_the_bot_update_forms_start_from_its_current_values(admin_client: Client) -> None:
    bot = ChatBotFactory(name="Support bot", system_prompt="Be brief.", temperature=0.5)
    page = html_page(admin_client, f"/api/chatbots/{bot.pk}/")
    put_form = form(page, "PUT")
    assert input_value(put_form, "name") == "Support bot"
    assert input_value(put_form, "temperature") == "0.5"
    assert ">Be brief.</textarea>" in put_form
    data = raw_data(page, "PUT")
    assert data["name"] == "Support bot"
    assert data["system_prompt"] == "Be brief."
    assert data["temperature"] == 0.5
    # The read shape's read-only fields are not offered for writing.
    assert not {"id", "secret_prefix", "created_at", "updated_at"} & set(data)


def test_a_bot_created_through_the_form_takes_its_numbers(admin_client: Client) -> None:
    response = admin_client.post(
        "/api/chatbots/",
        {
            "name": "Form bot",
            "system_prompt": "",
            "llm_model": "",
            "temperature": "0.7",
            "max_output_tokens": "",
            "context_messages": "20",
            "fallback_text": "",
            "pause_after_employee_minutes": "5",
            "pause_after_operator_reply_minutes": "",
        },
        HTTP_ACCEPT="application/json",
    )
    assert response.status_code == 201, response.content
    assert response.json()["secret_token"]
    bot = ChatBot.objects.get(name="Form bot")
    assert (bot.temperature, bot.context_messages, bot.pause_after_employee_minutes) == (0.7, 20, 5)
    assert bot.max_output_tokens is None
    assert bot.pause_after_operator_reply_minutes == 30  # left blank: the default


@pytest.mark.parametrize(
    ("field", "value"),
    [("temperature", "warm"), ("temperature", "nan"), ("temperature", "1e999"), ("context_messages", "2.5")],
)
def test_a_form_value_that_is_no_number_is_refused_naming_the_field(
    admin_client: Client, field: str, value: str
) -> None:
    response = admin_client.post("/api/chatbots/", {"name": "Form bot", field: value}, HTTP_ACCEPT="application/json")
    assert response.status_code == 400
    assert list(response.json()) == [field]
    assert not ChatBot.objects.filter(name="Form bot").exists()


def test_json_bodies_stay_strict(admin_client: Client) -> None:
    response = admin_client.post(
        "/api/chatbots/", {"name": "JSON bot", "temperature": "0.7"}, content_type="application/json"
    )
    assert response.status_code == 400
    assert response.json() == {"temperature": ["Must be a number."]}


def test_a_channel_updated_through_the_form_then_shows_the_form_again(admin_client: Client) -> None:
    bot = ChatBotFactory()
    channel = ChannelFactory(chat_bot=bot, name="Web chat", url="https://chat.example.com/hook")
    # An unticked checkbox is not sent: is_active false.
    response = admin_client.put(
        f"/api/channels/{channel.pk}/",
        multipart({"name": "Renamed", "url": "https://chat.example.com/v2", "chat_bot_id": str(bot.pk)}),
        content_type=MULTIPART_CONTENT,
        HTTP_ACCEPT="text/html",
    )
    assert response.status_code == 200, response.content
    stored = Channel.objects.get(pk=channel.pk)
    assert (stored.name, stored.settings.url, stored.is_active) == ("Renamed", "https://chat.example.com/v2", False)
    # The page answering the PUT draws the PUT form again, with the new values (not an empty one).
    put_form = form(response.content.decode(), "PUT")
    assert input_value(put_form, "name") == "Renamed"
    assert input_value(put_form, "url") == "https://chat.example.com/v2"
    assert not re.search(r'name="is_active" value="true"\s+checked', put_form)

    response = admin_client.patch(
        f"/api/channels/{channel.pk}/",
        multipart({"is_active": "true"}),
        content_type=MULTIPART_CONTENT,
        HTTP_ACCEPT="application/json",
    )
    assert response.status_code == 200
    # The answer is the read shape, as for JSON.
    keys = {"id", "name", "chat_bot_id", "url", "kind", "options", "is_active", "typing_events", "token"}
    assert set(response.json()) == keys
    assert Channel.objects.get(pk=channel.pk).is_active is True
    assert Channel.objects.get(pk=channel.pk).name == "Renamed"  # PATCH: what a form leaves out stays


def test_a_channel_created_through_the_form(admin_client: Client) -> None:
    bot = ChatBotFactory(name="Support desk")
    response = admin_client.post(
        "/api/channels/",
        {"name": "Form channel", "chat_bot_id": str(bot.pk), "url": "https://chat.example.com/hook"},
        HTTP_ACCEPT="text/html",
    )
    assert response.status_code == 201, response.content
    channel = Channel.objects.get(name="Form channel")
    assert channel.chat_bot_id == bot.pk
    assert channel.is_active is False  # the checkbox was left unticked
    # Under the answer, the create form again (not the answer's read-only fields).
    page = response.content.decode()
    assert '<select class="form-control" name="chat_bot_id">' in page
    assert '<input name="name"' in page


def test_the_docs_say_who_wrote_a_message_in_one_vocabulary() -> None:
    schema = SchemaGenerator().get_schema(request=None, public=True)
    schemas = schema["components"]["schemas"]
    role = schemas["Message"]["properties"]["role"]["description"]
    for words in ("`USER`: the customer", "`ASSISTANT`: a bot reply", "`EMPLOYEE`: an employee"):
        assert words in role
    assert "from the customer, a bot reply, or from an employee" in schemas["Message"]["description"]
    result = schemas["WebhookResult"]["properties"]
    assert "Kept for compatibility" in result["ignored"]["description"]
    assert "`ignored_reason`" in result["answered"]["description"]
    assert "`employee`: a message from an employee" in result["ignored_reason"]["description"]
    sender = schemas["WebhookMessageRequest"]["properties"]["message_sender"]["description"]
    assert '`"answered": false, "ignored_reason": "employee"`' in sender
    # No implementation notes (a base class's docstring) in place of a description.
    assert "ObjectIdAutoField" not in json.dumps(schema)
