from __future__ import annotations

from io import StringIO

import yaml
from django.core.management import call_command


def test_webhook_is_documented_and_the_schema_validates(tmp_path) -> None:  # type: ignore[no-untyped-def]
    target = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(target), stderr=StringIO())
    schema = yaml.safe_load(target.read_text())

    operation = schema["paths"]["/api/webhook/new_message"]["post"]
    # The bot's secret, in `x-chatbot_auth_token` or as `Authorization: Bearer` (no cookie, no API token).
    assert operation["security"] == [{"chatbotSecretHeader": []}, {"chatbotSecretBearer": []}]
    schemes = schema["components"]["securitySchemes"]
    assert schemes["chatbotSecretHeader"] == {"type": "apiKey", "in": "header", "name": "x-chatbot_auth_token"} | {
        key: value for key, value in schemes["chatbotSecretHeader"].items() if key == "description"
    }
    assert schemes["chatbotSecretBearer"]["type"] == "http" and schemes["chatbotSecretBearer"]["scheme"] == "bearer"
    assert {"200", "400", "401", "404", "409", "413"} <= set(operation["responses"])
    assert operation["responses"]["401"]["content"]["application/json"]["examples"]
    request = schema["components"]["schemas"]["WebhookMessageRequest"]
    assert set(request["required"]) == {"chat_id", "message_sender"}
    # `text`, or at least one attachment (or both).
    assert [set(option["required"]) for option in request["anyOf"]] == [{"text"}, {"attachments"}]
    assert request["properties"]["text"]["maxLength"] == 32 * 1024
