from __future__ import annotations

import logging
import time
from collections.abc import Callable

import pytest
from bson import ObjectId
from django.test import override_settings
from rest_framework.test import APIClient

from channels_app.services import channel_set_active
from channels_app.tests.factories import ChannelFactory
from chatbots.services import chatbot_rotate_secret
from chatbots.tests.factories import ChatBotFactory
from core.caching import lookup_caches_clear
from devtools.receiver import Reply
from dialogues.ingest import CHANNEL_NOT_FOUND
from dialogues.models import Dialogue, Message
from dialogues.tests.conftest import WEBHOOK_URL, customer_message

pytestmark = pytest.mark.django_db

Drain = Callable[[], None]


def test_customer_message_is_stored_and_acknowledged_at_once(channel, post_webhook, receiver) -> None:
    response = post_webhook(customer_message(channel, message_id="m-42", text="Where is my order?"))

    assert response.status_code == 200, response.content
    body = response.json()
    dialogue = Dialogue.objects.get()
    assert body == {
        "status": "Message processed successfully",
        "message_id": "m-42",
        "dialogue_id": str(dialogue.pk),
        "duplicate": False,
        "ignored": False,
        "replied": False,
        "reply_pending": True,
        "reply_message_id": None,
        "delivery": None,
        "resumed": False,
    }
    user = Message.objects.get()
    assert user.message_id == "m-42"
    assert user.role == Message.Role.USER
    assert user.text == "Where is my order?"
    assert user.reply_state == Message.ReplyState.AWAITING
    assert dialogue.chat_id == str(channel.pk)
    # The customer message and its reply's position are counted at once.
    assert dialogue.message_count == 2
    assert dialogue.last_message_at is not None
    assert receiver.requests == []  # the worker delivers, not the webhook


def test_the_worker_delivers_the_reply_to_the_channel(channel, post_webhook, receiver, drain: Drain) -> None:
    body = post_webhook(customer_message(channel, message_id="m-42", text="Where is my order?")).json()
    drain()

    user = Message.objects.get(message_id="m-42")
    assert user.reply_state == Message.ReplyState.REPLIED
    reply = Message.objects.get(role=Message.Role.ASSISTANT)
    assert reply.in_reply_to == "m-42"
    assert str(reply.dialogue_id) == body["dialogue_id"]
    assert reply.delivery_state == "delivered"
    assert reply.delivery_attempts == 1
    assert reply.last_status_code == 200
    assert reply.delivered_at is not None
    assert reply.claimed_until is None
    assert Dialogue.objects.get().message_count == 2

    [received] = receiver.requests
    assert received.path == "/hook"
    assert received.headers["x-chat_auth_token"] == f"Bearer {channel.settings.token}"
    assert received.headers["content-type"] == "application/json"
    assert received.headers["webhook-id"] == reply.message_id
    assert received.json == {
        "type": "message",
        "message_id": reply.message_id,
        "role": "ASSISTANT",
        "text": reply.text,
        "chat_id": str(channel.pk),
        "in_reply_to": "m-42",
    }
    channel.refresh_from_db()
    assert channel.last_delivery_state == "delivered"


def test_webhook_latency_does_not_depend_on_the_channel(channel, post_webhook, receiver, drain: Drain) -> None:
    receiver.default = Reply(delay_s=2.0)
    started = time.monotonic()
    response = post_webhook(customer_message(channel, message_id="m-slow"))
    elapsed = time.monotonic() - started

    assert response.status_code == 200
    assert response.json()["reply_pending"] is True
    assert elapsed < 0.5, f"the webhook took {elapsed:.2f} s with a channel that takes 2 s"

    drain()
    [received] = receiver.requests
    assert received.json["in_reply_to"] == "m-slow"
    assert Message.objects.get(role=Message.Role.ASSISTANT).delivery_state == "delivered"


def test_missing_message_id_gets_a_uuid4(channel, post_webhook) -> None:
    body = customer_message(channel)
    del body["message_id"]
    first = post_webhook(body)
    second = post_webhook(customer_message(channel, message_id=None))

    assert first.status_code == second.status_code == 200
    ids = {first.json()["message_id"], second.json()["message_id"]}
    assert len(ids) == 2
    for message_id in ids:
        assert len(message_id) == 36 and message_id[14] == "4"
    assert Message.objects.filter(role=Message.Role.USER).count() == 2


def test_duplicate_is_answered_200_and_stores_nothing(channel, post_webhook, receiver, drain: Drain) -> None:
    assert post_webhook(customer_message(channel)).status_code == 200
    early = post_webhook(customer_message(channel, text="changed text"))

    assert early.status_code == 200
    assert early.json()["duplicate"] is True
    assert early.json()["resumed"] is False
    assert early.json()["reply_pending"] is True and early.json()["replied"] is False

    drain()
    late = post_webhook(customer_message(channel, text="changed again"))
    drain()

    assert late.status_code == 200
    body = late.json()
    reply = Message.objects.get(role=Message.Role.ASSISTANT)
    assert body["duplicate"] is True
    assert body["resumed"] is False
    assert body["replied"] is True and body["reply_pending"] is False
    assert body["delivery"] == "delivered"
    assert body["reply_message_id"] == reply.message_id
    assert Message.objects.get(role=Message.Role.USER).text == "Hello there"
    assert Message.objects.filter(role=Message.Role.ASSISTANT).count() == 1
    assert Dialogue.objects.get().message_count == 2
    assert len(receiver.requests) == 1


def test_employee_message_is_stored_without_reply(channel, post_webhook, receiver, drain: Drain) -> None:
    response = post_webhook(customer_message(channel, message_id="e-1", message_sender="employee", text="Hi, Ann here"))

    assert response.status_code == 200
    assert response.json()["ignored"] is True
    assert response.json()["replied"] is False
    assert response.json()["reply_pending"] is False
    drain()
    message = Message.objects.get()
    assert message.role == Message.Role.EMPLOYEE
    assert message.reply_state == ""
    assert receiver.requests == []
    assert Dialogue.objects.get().message_count == 1


def test_channel_id_extension_gives_each_chat_its_own_dialogue(channel, post_webhook) -> None:
    for chat in ("alice", "bob"):
        response = post_webhook(customer_message(channel, chat_id=chat, channel_id=str(channel.pk)))
        assert response.status_code == 200
    assert sorted(Dialogue.objects.values_list("chat_id", flat=True)) == ["alice", "bob"]
    # The same message_id in two dialogues is two messages, not a duplicate.
    assert Message.objects.filter(message_id="m-1").count() == 2


def test_seed_header_and_alternatives_are_accepted(channel, bot, post_webhook) -> None:
    variants = [
        {"x-chatbot_auth_token": f"Bearer {bot.plain_secret}"},
        {"X-Chatbot-Auth-Token": f"Bearer {bot.plain_secret}"},
        {"Authorization": f"Bearer {bot.plain_secret}"},
        {"x-chatbot_auth_token": f"bearer {bot.plain_secret}"},
    ]
    for index, headers in enumerate(variants):
        response = post_webhook(customer_message(channel, message_id=f"m-{index}"), headers=headers)
        assert response.status_code == 200, (headers, response.content)


@pytest.mark.parametrize(
    ("headers", "detail"),
    [
        ({}, "x-chatbot_auth_token header is required"),
        (
            {"x-chatbot_auth_token": "secret-without-scheme"},
            "Invalid authorization header format, expected 'Bearer <token>'",
        ),
        ({"x-chatbot_auth_token": "Token abc"}, "Invalid authorization header format, expected 'Bearer <token>'"),
        ({"x-chatbot_auth_token": "Bearer a b"}, "Invalid authorization header format, expected 'Bearer <token>'"),
        ({"x-chatbot_auth_token": "Bearer "}, "Invalid authorization header format, expected 'Bearer <token>'"),
        ({"x-chatbot_auth_token": "Bearer cbs_not-a-real-secret"}, "Invalid token"),
        ({"Authorization": "Bearer cbs_not-a-real-secret"}, "Invalid token"),
    ],
)
def test_bad_authentication_is_401(channel, post_webhook, receiver, headers, detail) -> None:
    response = post_webhook(customer_message(channel), headers=headers)

    assert response.status_code == 401
    assert response.json() == {"detail": detail}
    assert Message.objects.count() == 0
    assert receiver.requests == []


def test_rotated_secret_stops_working_within_the_cache_ttl(channel, bot, post_webhook) -> None:
    old = bot.plain_secret
    assert post_webhook(customer_message(channel), secret=old).status_code == 200
    new = chatbot_rotate_secret(chat_bot=bot)
    with override_settings(AUTH_CACHE_TTL_S=0):
        lookup_caches_clear()
        assert post_webhook(customer_message(channel, message_id="m-2"), secret=old).status_code == 401
        assert post_webhook(customer_message(channel, message_id="m-3"), secret=new).status_code == 200


def test_no_csrf_or_session_needed(channel, bot) -> None:
    client = APIClient(enforce_csrf_checks=True)
    response = client.post(
        WEBHOOK_URL,
        data=customer_message(channel),
        format="json",
        headers={"x-chatbot_auth_token": f"Bearer {bot.plain_secret}"},
    )
    assert response.status_code == 200


BAD_BODIES = [
    pytest.param(b"{not json", id="malformed-json"),
    pytest.param(b"", id="empty-body"),
    pytest.param(b"[1, 2]", id="array"),
    pytest.param(b'"text"', id="string"),
    pytest.param(b"null", id="null"),
    pytest.param(b'{"chat_id": NaN}', id="nan"),
    pytest.param(b"\xff\xfe{}", id="not-utf8"),
    pytest.param(b"[" * 100_000 + b"]" * 100_000, id="deep-nesting"),
]


@pytest.mark.parametrize("raw", BAD_BODIES)
def test_unparseable_body_is_400(channel, post_webhook, raw) -> None:
    response = post_webhook(None, raw=raw)
    assert response.status_code == 400
    assert "detail" in response.json()
    assert Message.objects.count() == 0


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"chat_id": None}, "chat_id"),
        ({"chat_id": 123}, "chat_id"),
        ({"chat_id": {"$gt": ""}}, "chat_id"),
        ({"chat_id": ""}, "chat_id"),
        ({"chat_id": "x" * 257}, "chat_id"),
        ({"text": {"$ne": None}}, "text"),
        ({"text": ["a"]}, "text"),
        ({"text": 5}, "text"),
        ({"text": "x" * (32 * 1024 + 1)}, "text"),
        ({"message_id": {"$gt": ""}}, "message_id"),
        ({"message_id": 7}, "message_id"),
        ({"message_id": "m" * 257}, "message_id"),
        ({"message_sender": "robot"}, "message_sender"),
        ({"message_sender": {"$ne": None}}, "message_sender"),
        ({"message_sender": None}, "message_sender"),
        ({"message_sender": True}, "message_sender"),
        ({"channel_id": {"$gt": ""}}, "channel_id"),
        ({"channel_id": 1}, "channel_id"),
    ],
)
def test_invalid_fields_are_400(channel, post_webhook, receiver, change, field) -> None:
    response = post_webhook(customer_message(channel, **change))

    assert response.status_code == 400, response.content
    assert field in response.json()
    assert Message.objects.count() == 0
    assert Dialogue.objects.count() == 0
    assert receiver.requests == []


@pytest.mark.parametrize("missing", ["chat_id", "text", "message_sender"])
def test_missing_required_field_is_400(channel, post_webhook, missing) -> None:
    body = customer_message(channel)
    del body[missing]
    response = post_webhook(body)
    assert response.status_code == 400
    assert missing in response.json()


def test_longest_allowed_fields_are_accepted(channel, post_webhook) -> None:
    response = post_webhook(customer_message(channel, message_id="m" * 256, text="t" * (32 * 1024)))
    assert response.status_code == 200


def test_body_over_one_mebibyte_is_413(channel, post_webhook) -> None:
    raw = b'{"text": "' + b"x" * (1024 * 1024) + b'"}'
    response = post_webhook(None, raw=raw)
    assert response.status_code == 413
    assert "detail" in response.json()
    assert Message.objects.count() == 0


def test_body_over_limit_without_auth_is_still_413(channel, post_webhook) -> None:
    response = post_webhook(None, raw=b" " * (1024 * 1024 + 10), headers={})
    assert response.status_code == 413


@pytest.mark.parametrize("chat_id", [str(ObjectId()), "not-an-object-id", "", "0" * 24])
def test_unknown_channel_is_404(channel, post_webhook, receiver, chat_id) -> None:
    body = customer_message(channel, chat_id=chat_id) if chat_id else customer_message(channel, channel_id="zzz")
    response = post_webhook(body)
    assert response.status_code == 404
    assert response.json() == {"detail": CHANNEL_NOT_FOUND}
    # It says what a channel sending its own conversation ids as chat_id has to do instead.
    assert "send channel_id and use chat_id for the conversation" in response.json()["detail"]
    assert Message.objects.count() == 0
    assert Dialogue.objects.count() == 0
    assert receiver.requests == []


def test_another_bots_channel_is_404_and_never_posted_to(channel, post_webhook, receiver, drain: Drain) -> None:
    other_bot = ChatBotFactory()
    other_channel = ChannelFactory(chat_bot=other_bot, url=receiver.url)

    as_chat_id = post_webhook(customer_message(other_channel))
    as_channel_id = post_webhook(customer_message(channel, chat_id="c-1", channel_id=str(other_channel.pk)))
    drain()

    assert as_chat_id.status_code == as_channel_id.status_code == 404
    assert Message.objects.count() == 0
    assert receiver.requests == []


def test_inactive_channel_is_409(channel, post_webhook, receiver) -> None:
    channel_set_active(channel=channel, is_active=False)
    response = post_webhook(customer_message(channel))
    assert response.status_code == 409
    assert response.json() == {"detail": "Channel is inactive"}
    assert Message.objects.count() == 0
    assert receiver.requests == []


def test_deactivation_takes_effect_once_the_cache_expires(channel, post_webhook) -> None:
    assert post_webhook(customer_message(channel)).status_code == 200
    channel_set_active(channel=channel, is_active=False)
    with override_settings(AUTH_CACHE_TTL_S=0):
        lookup_caches_clear()
        assert post_webhook(customer_message(channel, message_id="m-2")).status_code == 409


def test_channel_failure_queues_the_reply_and_a_duplicate_reports_it_queued(
    channel, post_webhook, receiver, drain: Drain
) -> None:
    receiver.default = Reply(status=503)
    response = post_webhook(customer_message(channel))
    assert response.status_code == 200
    assert response.json()["reply_pending"] is True

    drain()
    reply = Message.objects.get(role=Message.Role.ASSISTANT)
    assert reply.delivery_state == "failed"
    assert reply.delivery_attempts == 1  # one attempt per claim; the worker retries later
    assert reply.last_status_code == 503
    assert reply.next_attempt_at is not None
    assert reply.claimed_until is None
    assert len(receiver.requests) == 1

    again = post_webhook(customer_message(channel)).json()
    assert again["duplicate"] is True and again["replied"] is True
    assert again["delivery"] == "queued" and again["reply_message_id"] == reply.message_id


@pytest.mark.parametrize("failing", ["dialogue_reserve", "message_insert"])
def test_database_outage_is_503_json(channel, post_webhook, monkeypatch, failing) -> None:
    from pymongo.errors import ServerSelectionTimeoutError

    import dialogues.ingest as ingest

    def unavailable(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise ServerSelectionTimeoutError("no servers")

    monkeypatch.setattr(ingest, failing, unavailable)
    response = post_webhook(customer_message(channel))
    assert response.status_code == 503
    assert response.json() == {"detail": "Database unavailable, try again later"}
    assert Message.objects.count() == 0


def test_one_structured_log_line_without_secrets_or_text(channel, bot, post_webhook, caplog, drain: Drain) -> None:
    caplog.set_level(logging.DEBUG)
    post_webhook(customer_message(channel, message_id="m-log", text="very private words"))

    lines = [r for r in caplog.records if r.name == "dialogues.webhook"]
    assert len(lines) == 1
    line = lines[0]
    assert line.levelno == logging.INFO
    assert line.bot == str(bot.pk)
    assert line.channel == str(channel.pk)
    assert line.chat_id == str(channel.pk)
    assert line.message_id == "m-log"
    assert line.outcome == "reply_pending"
    assert line.duration_ms >= 0

    drain()  # the worker's lines too: the LLM call and the delivery
    assert Message.objects.get(role=Message.Role.ASSISTANT).delivery_state == "delivered"
    attempts = [r for r in caplog.records if r.getMessage() == "delivery attempt"]
    assert len(attempts) == 1
    assert attempts[0].status_code == 200 and attempts[0].ok is True and attempts[0].latency_ms >= 0
    for record in caplog.records:
        if record.levelno >= logging.INFO:
            dumped = record.getMessage() + " " + repr(vars(record))
            assert "very private words" not in dumped
            assert bot.plain_secret not in dumped
            assert channel.settings.token not in dumped


def test_rejected_request_is_logged_once(channel, post_webhook, caplog) -> None:
    caplog.set_level(logging.INFO)
    post_webhook(customer_message(channel), headers={})
    [line] = [r for r in caplog.records if r.name == "dialogues.webhook"]
    assert line.outcome == "rejected_401"
    assert line.status == 401
