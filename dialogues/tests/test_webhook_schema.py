from __future__ import annotations

from io import StringIO

import yaml
from django.core.management import call_command


def test_webhook_is_documented_and_the_schema_validates(tmp_path) -> None:  # type: ignore[no-untyped-def]
    target = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(target), stderr=StringIO())
    schema = yaml.safe_load(target.read_text())

    operation = schema["paths"]["/api/webhook/new_message"]["post"]
    assert operation.get("security") in (None, [], [{}])  # no cookie or token auth
    [header] = [p for p in operation["parameters"] if p["in"] == "header"]
    assert header["name"] == "x-chatbot_auth_token" and header["required"] is True
    assert {"200", "400", "401", "404", "409", "413"} <= set(operation["responses"])
    assert operation["responses"]["401"]["content"]["application/json"]["examples"]
    request = schema["components"]["schemas"]["WebhookMessageRequest"]
    assert set(request["required"]) == {"chat_id", "text", "message_sender"}
    assert request["properties"]["text"]["maxLength"] == 32 * 1024
