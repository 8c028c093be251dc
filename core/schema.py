"""What the OpenAPI schema says beyond what drf-spectacular infers from the views, added by
postprocessing hooks (SPECTACULAR_SETTINGS['POSTPROCESSING_HOOKS']) so that no view repeats it:

- one error component, `Error`, for every error response, and every status the server can
  answer an operation with (`error_responses`);
- links from the operations that create or list objects to the operations that take their ids
  (`id_links`), so that a client generator, or a stateful fuzzer, can follow them; and from each
  operation on one object to the other operations on it.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from rest_framework import serializers

from core import pagination
from core.errors import DATABASE_UNAVAILABLE, RETRY_AFTER_S, read_too_slow_message
from core.middleware import MAX_URL_BYTES, URL_TOO_LONG

ERROR_COMPONENT = "Error"
ERROR_REF = {"$ref": f"#/components/schemas/{ERROR_COMPONENT}"}
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Every error has this shape. `detail` says what is wrong with the request as a whole; "
    'an invalid field or parameter is named instead, with its messages: `{"url": ["..."]}`. A 500 also '
    "carries the `request_id` to quote.",
    "properties": {
        "detail": {"type": "string"},
        "request_id": {"type": "string", "nullable": True},
    },
    "additionalProperties": {"type": "array", "items": {"type": "string"}},
}

# The security schemes of the management API (as drf-spectacular names them).
MANAGEMENT_SCHEMES = {"tokenAuth", "cookieAuth"}
# The webhook's: the bot's secret, in either header (see dialogues.webhook.parsing.request_secret).
WEBHOOK_SECURITY_SCHEMES: dict[str, Any] = {
    "chatbotSecretHeader": {
        "type": "apiKey",
        "in": "header",
        "name": "x-chatbot_auth_token",
        "description": "`Bearer <bot secret>` in the `x-chatbot_auth_token` header (also read as "
        "`X-Chatbot-Auth-Token`). Takes precedence over `Authorization`.",
    },
    "chatbotSecretBearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "`Authorization: Bearer <bot secret>`.",
    },
}
WEBHOOK_SECURITY: list[dict[str, list[str]]] = [{name: []} for name in WEBHOOK_SECURITY_SCHEMES]

_WRITES = {"post", "put", "patch"}
_METHODS = {"get", "put", "post", "delete", "patch"}


def _example(detail: str) -> dict[str, Any]:
    return {"application/json": {"schema": ERROR_REF, "example": {"detail": detail}}}


_STANDARD_ERRORS: dict[str, dict[str, Any]] = {
    "400": {
        "description": "Invalid input: the field or parameter at fault is named, with its messages.",
        "content": {
            "application/json": {
                "schema": ERROR_REF,
                "example": {"name": ["Must be a string."]},
            }
        },
    },
    "401": {
        "description": "No or invalid credentials (`Authorization: Token <key>`, or a staff session).",
        "content": _example("Authentication credentials were not provided."),
    },
    "403": {
        "description": "Authenticated, but not a staff user with the model permission this needs.",
        "content": _example("You do not have permission to perform this action."),
    },
    "404": {
        "description": "No object with this id (or a malformed id).",
        "content": _example("Not found."),
    },
    "409": {
        "description": "Conflicts with an existing object.",
        "content": _example("Conflicts with an existing object"),
    },
    "413": {
        "description": "The request body is larger than the server takes.",
        "content": _example("Request body too large."),
    },
    "429": {
        "description": 'Too many requests (docs/operations.md, "Rate limits"): try again after `Retry-After` seconds.',
        "headers": {
            "Retry-After": {
                "description": "Seconds to wait before trying again.",
                "schema": {"type": "string", "pattern": "^[0-9]+$"},
            }
        },
        "content": _example("Request was throttled. Expected available in 60 seconds."),
    },
    "415": {
        "description": "Unsupported media type: send `application/json`.",
        "content": _example('Unsupported media type "text/plain" in request.'),
    },
    "414": {
        "description": f"The URL (path and query string) is longer than {MAX_URL_BYTES} bytes. A request line "
        "longer than 8190 bytes is refused by the HTTP server itself, with its own (not JSON) 414.",
        "content": _example(URL_TOO_LONG),
    },
    "422": {
        "description": "The read took longer than its time limit (`MONGO_READ_TIMEOUT_MS`): narrow it "
        "with a filter or a smaller page, or follow the cursor. The database itself is fine.",
        "content": _example(read_too_slow_message()),
    },
    "503": {
        "description": "The database did not answer in time; try again after `Retry-After` seconds.",
        "headers": {
            "Retry-After": {
                "description": f"Seconds to wait before trying again ({RETRY_AFTER_S}).",
                "schema": {"type": "string", "pattern": "^[0-9]+$"},
            }
        },
        "content": _example(DATABASE_UNAVAILABLE),
    },
}


def _operations(result: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, operation)
        for path, item in result.get("paths", {}).items()
        for method, operation in item.items()
        if method in _METHODS
    ]


def _statuses(path: str, method: str, operation: dict[str, Any]) -> list[str]:
    schemes = {name for requirement in operation.get("security", []) for name in requirement}
    statuses = ["414", "429", "503"]
    if operation.get("requestBody"):
        statuses.append("413")
    if operation.get("requestBody") or any(p.get("in") == "query" for p in operation.get("parameters", [])):
        statuses.append("400")
    if schemes & MANAGEMENT_SCHEMES:
        # Management reads run under their own time limit (core.db_routing).
        statuses += ["401", "403", "422"]
    if "{" in path:
        statuses.append("404")
    if method in _WRITES and schemes & MANAGEMENT_SCHEMES:
        statuses.append("409")
    if operation.get("requestBody") and schemes & MANAGEMENT_SCHEMES:
        # DRF's parsers; the webhook reads its body itself, whatever the content type.
        statuses.append("415")
    return statuses


def error_responses(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """Every error response in the `Error` shape, and every status the server answers with
    documented: 400 where there is input, 401/403 behind the management API's auth, 404 on a
    path with an id, 409 and 415 on its writes (a unique index; DRF's parsers), 422 on the
    management API (a read over its time limit), 413 where there is a body, 414, 429 and 503
    everywhere."""
    components = result.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas[ERROR_COMPONENT] = copy.deepcopy(ERROR_SCHEMA)
    components.setdefault("securitySchemes", {}).update(copy.deepcopy(WEBHOOK_SECURITY_SCHEMES))
    for path, method, operation in _operations(result):
        responses = operation.setdefault("responses", {})
        for status in _statuses(path, method, operation):
            responses.setdefault(status, copy.deepcopy(_STANDARD_ERRORS[status]))
        for status, response in responses.items():
            if status[:1] not in ("4", "5"):
                continue
            for media in response.setdefault("content", {"application/json": {}}).values():
                media["schema"] = dict(ERROR_REF)
        operation["responses"] = dict(sorted(responses.items()))
    _drop_unused_components(result)
    return result


def _drop_unused_components(result: dict[str, Any]) -> None:
    """Error shapes the views declared (`ErrorSerializer`, `WebhookError`) are now `Error`."""
    schemas = result["components"]["schemas"]
    while True:
        text = repr({k: v for k, v in result.items() if k != "components"}) + repr(
            {name: schema for name, schema in schemas.items()}
        )
        unused = [name for name in schemas if f"#/components/schemas/{name}'" not in text]
        if not unused:
            return
        for name in unused:
            del schemas[name]


# --- Links ---------------------------------------------------------------------------------
#
# An object's id travels under the names below: as `id` in its own collection's answers, and
# as `<name>` in other objects and in the parameters and bodies that refer to it. The first
# name is the one other objects use for it; the others are parameters that take it too (the
# existing contract's `chat_id` is a channel's id).
ID_NAMES: dict[str, tuple[str, ...]] = {
    "/api/chatbots/": ("chat_bot_id",),
    "/api/channels/": ("channel_id", "chat_id"),
    "/api/dialogues/": ("dialogue_id",),
}


def _resolve(result: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = result["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def _answer_fields(result: dict[str, Any], response: dict[str, Any]) -> tuple[str, set[str]]:
    """The JSON pointer prefix of the (first) object in an answer, and its properties."""
    media = response.get("content", {}).get("application/json")
    if not media or "schema" not in media:
        return "", set()
    schema = _resolve(result, media["schema"])
    if "oneOf" in schema:
        # The list operations: a plain array, or the paginated envelope with limit/offset.
        schema = _resolve(result, schema["oneOf"][0])
    prefix = ""
    results = schema.get("properties", {}).get("results") if schema.get("type") == "object" else None
    if results is not None and {"next", "previous"} <= set(schema["properties"]):
        # A list paginated by default (core.pagination.KeysetCursorPagination).
        prefix, schema = "/results", _resolve(result, results)
    if schema.get("type") == "array":
        prefix, schema = f"{prefix}/0", _resolve(result, schema.get("items", {}))
    return prefix, set(schema.get("properties", {}))


# Paths under one collection's `{id}` that answer with an object of another: a channel's
# history and a dialogue's messages are a dialogue (their `id` is the dialogue's).
ANSWERS_OF: dict[str, str] = {
    "/api/channels/{id}/dialogue/": "/api/dialogues/",
    "/api/dialogues/{id}/messages/": "/api/dialogues/",
}


def _own_collection(path: str) -> str | None:
    """The collection whose objects this path answers with: itself, or its `{id}/`."""
    if path in ANSWERS_OF:
        return ANSWERS_OF[path]
    for collection in ID_NAMES:
        if path in (collection, f"{collection}{{id}}/"):
            return collection
    return None


def _detail_collection(path: str) -> str | None:
    """The collection whose id this path's `{id}` is."""
    for collection in ID_NAMES:
        if path.startswith(f"{collection}{{id}}/"):
            return collection
    return None


def _request_fields(result: dict[str, Any], operation: dict[str, Any]) -> set[str]:
    media = operation.get("requestBody", {}).get("content", {}).get("application/json")
    if not media or "schema" not in media:
        return set()
    return set(_resolve(result, media["schema"]).get("properties", {}))


def _source(
    collection: str, name: str, *, own: str | None, prefix: str, fields: set[str], primary_only: bool
) -> str | None:
    """The runtime expression for the id of `collection` (taken as `name`) in an answer."""
    if name in fields and (not primary_only or name == ID_NAMES[collection][0]):
        return f"$response.body#{prefix}/{name}"
    if own == collection and "id" in fields:
        return f"$response.body#{prefix}/id"
    primary = ID_NAMES[collection][0]
    if primary in fields:
        return f"$response.body#{prefix}/{primary}"
    return None


def api_paths_only(endpoints: list[tuple[str, str, str, Any]]) -> list[tuple[str, str, str, Any]]:
    """drf-spectacular's preprocessing hook: only `/api/` paths go into the schema."""
    return [endpoint for endpoint in endpoints if endpoint[0].startswith("/api/")]


def id_links(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """For every answer that carries ids (what a create, a list or a read returns), a link to
    every other operation that takes one of them: in its path (`{id}`), a query parameter or
    its body. A link fills what it can; the rest is the client's. An operation on one object
    (`<collection>{id}/...`) also links to the other operations on that object, with the id it
    was called with (`$request.path.id`), whatever its answer carries: an operator's message
    leads to its dialogue."""
    operations = _operations(result)
    for path, method, operation in operations:
        own = _own_collection(path)
        for status, response in operation.get("responses", {}).items():
            if status not in ("200", "201"):
                continue
            prefix, fields = _answer_fields(result, response)
            if not fields:
                continue
            links: dict[str, Any] = {}
            for target_path, target_method, target in operations:
                if (target_path, target_method) == (path, method) or "operationId" not in target:
                    continue
                link = _link(result, target_path, target, own=own, prefix=prefix, fields=fields, source_path=path)
                if link:
                    links[target["operationId"]] = link
            if links:
                response["links"] = dict(sorted(links.items()))
    return result


def _link(
    result: dict[str, Any],
    path: str,
    operation: dict[str, Any],
    *,
    own: str | None,
    prefix: str,
    fields: set[str],
    source_path: str,
) -> dict[str, Any] | None:
    link: dict[str, Any] = {"operationId": operation["operationId"]}
    parameters: dict[str, str] = {}
    detail = _detail_collection(path)
    if "{" in path:
        # Only ids of the path's own collection; a link that cannot fill the path is no link.
        if detail is None:
            return None
        expression = _source(detail, "id", own=own, prefix=prefix, fields=fields, primary_only=True)
        if expression is None and _detail_collection(source_path) == detail:
            # Another operation on the object the source was called on.
            expression = "$request.path.id"
        if expression is None:
            return None
        parameters["path.id"] = expression
    for parameter in operation.get("parameters", []):
        if parameter.get("in") != "query":
            continue
        for collection, names in ID_NAMES.items():
            if parameter["name"] in names:
                expression = _source(
                    collection, parameter["name"], own=own, prefix=prefix, fields=fields, primary_only=False
                )
                if expression:
                    parameters[f"query.{parameter['name']}"] = expression
    body: dict[str, str] = {}
    for name in sorted(_request_fields(result, operation)):
        for collection, names in ID_NAMES.items():
            if name in names:
                expression = _source(collection, name, own=own, prefix=prefix, fields=fields, primary_only=False)
                if expression:
                    body[name] = expression
    if not parameters and not body:
        return None
    if parameters:
        link["parameters"] = parameters
    if body:
        link["requestBody"] = body
    return link


# --- Bounds drf-spectacular does not state ----------------------------------------------------


def input_bounds(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """- A blank-allowed string with a pattern comes out of drf-spectacular as `oneOf: [{pattern},
      {maxLength: 0}]`, which "" matches twice, so no client may send the blank the server
      accepts. The pattern already admits "": one schema.
    - The paginated lists' `offset` has a maximum (core.pagination)."""
    for schema in result.get("components", {}).get("schemas", {}).values():
        for name, prop in schema.get("properties", {}).items():
            schema["properties"][name] = _one_blank_string(prop)
    max_offset = _max_offset()
    for _path, _method, operation in _operations(result):
        for parameter in operation.get("parameters", []):
            if parameter.get("in") == "query" and parameter.get("name") == "offset":
                parameter.setdefault("schema", {})["maximum"] = max_offset
    return result


def _one_blank_string(prop: dict[str, Any]) -> dict[str, Any]:
    alternatives = prop.get("oneOf")
    if not alternatives or len(alternatives) != 2 or alternatives[1] != {"type": "string", "maxLength": 0}:
        return prop
    main = alternatives[0]
    pattern = main.get("pattern")
    if main.get("type") != "string" or pattern is None or not re.search(pattern, ""):
        return prop
    merged = {key: value for key, value in prop.items() if key != "oneOf"}
    return {**main, **merged}


def _max_offset() -> int:
    # The bound core.pagination checks; its own schema states only the limit's.
    offset = pagination._PageParams().fields["offset"]
    assert isinstance(offset, serializers.IntegerField)
    return int(offset.max_value or 0)
