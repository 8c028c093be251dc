"""What the schema promises, checked on the schema itself: the error statuses and their one
shape, the bounds the server enforces, the webhook's security schemes, and the links from the
operations that return ids to those that take them. (tests/fault/test_schema_fuzz.py checks
the server keeps these promises.)"""

from __future__ import annotations

from io import StringIO
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.core.management import call_command

METHODS = {"get", "post", "put", "patch", "delete"}
ERROR_REF = {"$ref": "#/components/schemas/Error"}


@pytest.fixture(scope="module")
def schema(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    target: Path = tmp_path_factory.mktemp("schema") / "schema.yaml"
    call_command("spectacular", validate=True, fail_on_warn=True, file=str(target), stdout=StringIO())
    return yaml.safe_load(target.read_text())


def _operations(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(p, m, op) for p, item in schema["paths"].items() for m, op in item.items() if m in METHODS]


def test_every_error_response_has_the_one_error_shape(schema: dict[str, Any]) -> None:
    for path, method, operation in _operations(schema):
        responses = operation["responses"]
        assert {"414", "503"} <= set(responses), (method, path)
        if "{" in path:
            assert "404" in responses, (method, path)
        if operation.get("requestBody") or any(p["in"] == "query" for p in operation.get("parameters", [])):
            assert "400" in responses, (method, path)
        if path.startswith("/api/webhook/"):
            assert {"401", "413"} <= set(responses)
        else:
            assert {"401", "403", "422"} <= set(responses), (method, path)
        for status, response in responses.items():
            if status.startswith(("4", "5")):
                assert response["content"]["application/json"]["schema"] == ERROR_REF, (method, path, status)
    error = schema["components"]["schemas"]["Error"]
    assert error["properties"]["detail"] == {"type": "string"}
    assert error["additionalProperties"] == {"type": "array", "items": {"type": "string"}}


def test_request_bodies_are_json_only(schema: dict[str, Any]) -> None:
    for _path, _method, operation in _operations(schema):
        if "requestBody" in operation:
            assert set(operation["requestBody"]["content"]) == {"application/json"}


@pytest.mark.parametrize("path", ["/api/channels/", "/api/chatbots/"])
def test_list_pagination_is_bounded(schema: dict[str, Any], path: str) -> None:
    parameters = {p["name"]: p["schema"] for p in schema["paths"][path]["get"]["parameters"]}
    assert parameters["offset"]["minimum"] == 0 and parameters["offset"]["maximum"] == 10_000_000
    assert parameters["limit"]["minimum"] == 1 and parameters["limit"]["maximum"] == 500


def test_dialogue_list_is_a_cursor_envelope(schema: dict[str, Any]) -> None:
    operation = schema["paths"]["/api/dialogues/"]["get"]
    parameters = {p["name"]: p["schema"] for p in operation["parameters"]}
    assert "offset" not in parameters and parameters["cursor"]["type"] == "string"
    assert parameters["limit"]["minimum"] == 1 and parameters["limit"]["maximum"] == 500
    envelope = operation["responses"]["200"]["content"]["application/json"]["schema"]
    if "$ref" in envelope:
        envelope = schema["components"]["schemas"][envelope["$ref"].rsplit("/", 1)[-1]]
    assert set(envelope["required"]) == {"next", "previous", "results"}
    assert envelope["properties"]["results"]["type"] == "array"
    assert envelope["properties"]["next"]["nullable"] is True


def test_names_and_urls_state_their_rules(schema: dict[str, Any]) -> None:
    schemas = schema["components"]["schemas"]
    for component in ("ChatBotInputRequest", "ChannelCreateRequest", "ChannelUpdateRequest"):
        name = schemas[component]["properties"]["name"]
        assert name["type"] == "string" and name["maxLength"] == 200 and name["minLength"] == 1
        assert "\\u001f" in name["pattern"], component
    url = schemas["ChannelCreateRequest"]["properties"]["url"]
    assert url["maxLength"] == 2048 and url["pattern"].startswith("^[hH][tT][tT][pP][sS]?://")
    # A blank-allowed string is one schema, not a oneOf that "" would match twice.
    assert "oneOf" not in schemas["ChatBotInputRequest"]["properties"]["llm_model"]
    parameters = {p["name"]: p["schema"] for p in schema["paths"]["/api/channels/{id}/dialogue/"]["get"]["parameters"]}
    assert parameters["before"]["maxLength"] == parameters["after"]["maxLength"] == 256


def test_webhook_declares_its_security_schemes(schema: dict[str, Any]) -> None:
    schemes = schema["components"]["securitySchemes"]
    assert schemes["chatbotSecretHeader"] == {
        "type": "apiKey",
        "in": "header",
        "name": "x-chatbot_auth_token",
        "description": schemes["chatbotSecretHeader"]["description"],
    }
    assert schemes["chatbotSecretBearer"]["type"] == "http" and schemes["chatbotSecretBearer"]["scheme"] == "bearer"
    operation = schema["paths"]["/api/webhook/new_message"]["post"]
    assert operation["security"] == [{"chatbotSecretHeader": []}, {"chatbotSecretBearer": []}]


def _links(schema: dict[str, Any], path: str, method: str, status: str) -> dict[str, Any]:
    return schema["paths"][path][method]["responses"][status]["links"]


def _operation_ids_under(schema: dict[str, Any], prefix: str) -> set[str]:
    return {op["operationId"] for path, _m, op in _operations(schema) if path.startswith(prefix)}


def test_created_and_listed_ids_link_to_the_operations_that_take_them(schema: dict[str, Any]) -> None:
    channels = _links(schema, "/api/channels/", "post", "201")
    assert _operation_ids_under(schema, "/api/channels/{id}/") <= set(channels)
    assert channels["channels_retrieve"]["parameters"] == {"path.id": "$response.body#/id"}
    assert channels["webhook_new_message"]["requestBody"]["chat_id"] == "$response.body#/id"
    assert channels["chatbots_retrieve"]["parameters"] == {"path.id": "$response.body#/chat_bot_id"}

    bots = _links(schema, "/api/chatbots/", "post", "201")
    assert _operation_ids_under(schema, "/api/chatbots/{id}/") <= set(bots)
    assert bots["channels_create"]["requestBody"] == {"chat_bot_id": "$response.body#/id"}

    dialogues = _links(schema, "/api/dialogues/", "get", "200")
    assert _operation_ids_under(schema, "/api/dialogues/{id}/") <= set(dialogues)
    assert dialogues["dialogues_retrieve"]["parameters"] == {"path.id": "$response.body#/results/0/id"}

    webhook = _links(schema, "/api/webhook/new_message", "post", "200")
    assert webhook["dialogues_retrieve"]["parameters"] == {"path.id": "$response.body#/dialogue_id"}


def test_a_history_and_an_operation_on_one_object_link_to_that_object(schema: dict[str, Any]) -> None:
    """A channel's history answers with its dialogue's id; an operator's message (whose answer
    names no dialogue) leads back to its dialogue through the id it was posted to."""
    dialogue_ops = _operation_ids_under(schema, "/api/dialogues/{id}/")
    history = _links(schema, "/api/channels/{id}/dialogue/", "get", "200")
    assert dialogue_ops <= set(history)
    assert history["dialogues_retrieve"]["parameters"] == {"path.id": "$response.body#/id"}
    written = _links(schema, "/api/dialogues/{id}/messages/", "post", "201")
    assert dialogue_ops - {"dialogues_messages_create"} <= set(written)
    assert written["dialogues_retrieve"]["parameters"] == {"path.id": "$request.path.id"}


def _component(schema: dict[str, Any], path: str, method: str, status: str) -> dict[str, Any]:
    ref = schema["paths"][path][method]["responses"][status]["content"]["application/json"]["schema"]["$ref"]
    return schema["components"]["schemas"][ref.rsplit("/", 1)[-1]]


def test_the_schema_says_when_a_channel_token_is_absent_and_what_an_unknown_bot_gets(schema: dict[str, Any]) -> None:
    read = _component(schema, "/api/channels/{id}/", "get", "200")
    assert "token" in read["properties"] and "token" not in read["required"]
    assert "token" in _component(schema, "/api/channels/", "post", "201")["required"]
    assert "token" in _component(schema, "/api/channels/{id}/rotate_token/", "post", "200")["required"]
    create = schema["paths"]["/api/channels/"]["post"]["responses"]
    assert "chat_bot_id" in create["404"]["content"]["application/json"]["examples"]["UnknownBot"]["value"]
    update = schema["paths"]["/api/channels/{id}/"]["patch"]["responses"]
    assert "chat_bot_id" in update["409"]["content"]["application/json"]["examples"]["AnotherBot"]["value"]
