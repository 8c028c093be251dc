"""Signed inbound webhooks: a bot with `require_signed_webhooks` accepts only messages carrying a
Standard Webhooks signature made with its signing secret, within 5 minutes, each id once."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from rest_framework.test import APIClient
from standardwebhooks.webhooks import Webhook

from channels_app.models import Channel
from channels_app.tests.factories import ChannelFactory
from chatbots.models import ChatBot, SignedWebhookId
from chatbots.services import (
    SIGNATURE_INVALID,
    SIGNATURE_REQUIRED,
    SIGNATURE_TIMESTAMP_INVALID,
    WEBHOOK_ID_REPLAYED,
    chatbot_webhook_signing_secret_rotate,
)
from chatbots.tests.factories import ChatBotFactory
from core.caching import lookup_caches_clear
from core.mongo import mongo_collection
from core.tokens import generate_signing_secret
from dialogues.models import Message
from dialogues.tests.conftest import WEBHOOK_URL, customer_message

pytestmark = pytest.mark.django_db


@pytest.fixture
def bot() -> ChatBot:
    return ChatBotFactory(require_signed_webhooks=True)


def signed_headers(
    secret: str, body: bytes, *, webhook_id: str = "msg_1", at: datetime | None = None
) -> dict[str, str]:
    at = at or datetime.now(tz=UTC)
    signature = Webhook(secret).sign(msg_id=webhook_id, timestamp=at, data=body.decode())
    return {"webhook-id": webhook_id, "webhook-timestamp": str(int(at.timestamp())), "webhook-signature": signature}


def post(bot: ChatBot, body: bytes, headers: dict[str, str]) -> Any:
    return APIClient().post(
        WEBHOOK_URL,
        data=body,
        content_type="application/json",
        headers={"x-chatbot_auth_token": f"Bearer {bot.plain_secret}", **headers},  # type: ignore[attr-defined]
    )


def body_of(channel: Channel, **fields: Any) -> bytes:
    return json.dumps(customer_message(channel, **fields)).encode()


def test_a_bot_is_created_with_a_signing_secret_it_does_not_require_by_default() -> None:
    plain = ChatBotFactory()
    assert plain.require_signed_webhooks is False
    assert plain.webhook_signing_secret.startswith("whsec_")
    assert plain.webhook_signing_secret != ChatBotFactory().webhook_signing_secret


def test_a_valid_signature_is_accepted_and_the_message_stored(bot: ChatBot, channel: Channel) -> None:
    body = body_of(channel, message_id="s-1")

    response = post(bot, body, signed_headers(bot.webhook_signing_secret, body))

    assert response.status_code == 200, response.content
    assert Message.objects.get().message_id == "s-1"
    stored = mongo_collection(SignedWebhookId._meta.db_table).find_one({"chat_bot_id": bot.pk})
    assert stored is not None and stored["webhook_id"] == "msg_1"
    assert stored["expires_at"] > datetime.now(tz=UTC).replace(tzinfo=None) + timedelta(minutes=5)


def test_the_signature_covers_the_exact_bytes_received(bot: ChatBot, channel: Channel) -> None:
    # Spacing and key order the server would not produce itself: verified as sent.
    body = b'{ "text":"Hello \\u00e9",  "chat_id": "%s", "message_sender":"customer", "message_id":"s-2" }' % (
        str(channel.pk).encode()
    )

    response = post(bot, body, signed_headers(bot.webhook_signing_secret, body))

    assert response.status_code == 200, response.content
    assert Message.objects.get().text == "Hello é"


@pytest.mark.parametrize(
    "case",
    ["wrong secret", "tampered body", "stale timestamp", "future timestamp", "missing headers", "garbage signature"],
)
def test_bad_signatures_are_401_and_nothing_is_stored(bot: ChatBot, channel: Channel, case: str) -> None:
    body = body_of(channel)
    headers = signed_headers(bot.webhook_signing_secret, body)
    expected = SIGNATURE_INVALID
    if case == "wrong secret":
        headers = signed_headers(generate_signing_secret(), body)
    elif case == "tampered body":
        body = body.replace(b"Hello there", b"Hello thera")
    elif case == "stale timestamp":
        headers = signed_headers(bot.webhook_signing_secret, body, at=datetime.now(tz=UTC) - timedelta(minutes=6))
        expected = SIGNATURE_TIMESTAMP_INVALID
    elif case == "future timestamp":
        headers = signed_headers(bot.webhook_signing_secret, body, at=datetime.now(tz=UTC) + timedelta(minutes=6))
        expected = SIGNATURE_TIMESTAMP_INVALID
    elif case == "missing headers":
        del headers["webhook-signature"]
        expected = SIGNATURE_REQUIRED
    elif case == "garbage signature":
        headers["webhook-signature"] = "v1,not base64!,x v2 ,,,"

    response = post(bot, body, headers)

    assert response.status_code == 401, response.content
    assert response.json() == {"detail": expected}
    assert Message.objects.count() == 0
    assert SignedWebhookId.objects.count() == 0


def test_no_signature_at_all_is_401(bot: ChatBot, channel: Channel) -> None:
    response = post(bot, body_of(channel), {})

    assert response.status_code == 401
    assert response.json() == {"detail": SIGNATURE_REQUIRED}
    assert Message.objects.count() == 0


def test_a_replayed_webhook_id_is_409_and_not_stored_again(bot: ChatBot, channel: Channel) -> None:
    body = body_of(channel, message_id="r-1")
    headers = signed_headers(bot.webhook_signing_secret, body)
    assert post(bot, body, headers).status_code == 200

    replay = post(bot, body, headers)
    # The same id with another, validly signed message is a replay too.
    other = body_of(channel, message_id="r-2")
    reused = post(bot, other, signed_headers(bot.webhook_signing_secret, other))

    assert replay.status_code == 409 and replay.json() == {"detail": WEBHOOK_ID_REPLAYED}
    assert reused.status_code == 409
    assert list(Message.objects.values_list("message_id", flat=True)) == ["r-1"]


def test_the_same_webhook_id_is_fine_for_another_bot(bot: ChatBot, channel: Channel, receiver: Any) -> None:
    other_bot = ChatBotFactory(require_signed_webhooks=True)
    other_channel = ChannelFactory(chat_bot=other_bot, url=receiver.url)
    first, second = body_of(channel), body_of(other_channel)

    assert post(bot, first, signed_headers(bot.webhook_signing_secret, first)).status_code == 200
    assert post(other_bot, second, signed_headers(other_bot.webhook_signing_secret, second)).status_code == 200
    assert Message.objects.count() == 2


def test_a_refused_body_gives_its_webhook_id_back_for_the_retry(bot: ChatBot, channel: Channel) -> None:
    bad = json.dumps({"chat_id": str(channel.pk), "text": "hi", "message_sender": "robot"}).encode()
    assert post(bot, bad, signed_headers(bot.webhook_signing_secret, bad, webhook_id="msg_retry")).status_code == 400

    good = body_of(channel)
    response = post(bot, good, signed_headers(bot.webhook_signing_secret, good, webhook_id="msg_retry"))

    assert response.status_code == 200, response.content
    assert Message.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_two_identical_requests_at_once_exactly_one_is_accepted(bot: ChatBot, channel: Channel) -> None:
    racers = 6
    body = body_of(channel, message_id="race-1")
    headers = signed_headers(bot.webhook_signing_secret, body, webhook_id="msg_race")
    barrier = threading.Barrier(racers)
    statuses: list[int] = []

    def run() -> None:
        from django.db import connection

        try:
            barrier.wait()
            statuses.append(post(bot, body, headers).status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(statuses) == [200] + [409] * (racers - 1)
    assert Message.objects.filter(message_id="race-1").count() == 1


def test_a_bot_without_the_flag_needs_no_signature_and_keeps_no_ids(receiver: Any) -> None:
    plain = ChatBotFactory()
    plain_channel = ChannelFactory(chat_bot=plain, url=receiver.url)
    body = body_of(plain_channel)
    # Signature headers from anyone are ignored for it, valid or not.
    headers = {"webhook-id": "x", "webhook-timestamp": "1", "webhook-signature": "v1,Zm9v"}

    assert post(plain, body, {}).status_code == 200
    assert post(plain, body_of(plain_channel, message_id="m-2"), headers).status_code == 200
    assert Message.objects.count() == 2
    assert SignedWebhookId.objects.count() == 0


def test_rotation_with_an_overlap_accepts_both_secrets_until_it_ends(bot: ChatBot, channel: Channel) -> None:
    old = bot.webhook_signing_secret
    new = chatbot_webhook_signing_secret_rotate(chat_bot=bot, overlap_s=3600)
    lookup_caches_clear()  # the webhook's bot cache (AUTH_CACHE_TTL_S)
    first, second = body_of(channel, message_id="o-1"), body_of(channel, message_id="o-2")

    assert post(bot, first, signed_headers(old, first, webhook_id="a")).status_code == 200
    assert post(bot, second, signed_headers(new, second, webhook_id="b")).status_code == 200

    chatbot_webhook_signing_secret_rotate(chat_bot=bot, overlap_s=0)
    lookup_caches_clear()
    third = body_of(channel, message_id="o-3")
    assert post(bot, third, signed_headers(new, third, webhook_id="c")).status_code == 401


# --- The bot API: the flag is writable, the signing secret shown once -----------------------


def test_the_api_shows_the_signing_secret_on_create_only_and_it_signs(api_client: APIClient, receiver: Any) -> None:
    created = api_client.post("/api/chatbots/", {"name": "Signed", "require_signed_webhooks": True}, format="json")

    assert created.status_code == 201, created.content
    body = created.json()
    assert body["require_signed_webhooks"] is True
    signing_secret = body["webhook_signing_secret"]
    assert signing_secret.startswith("whsec_")
    read = api_client.get(f"/api/chatbots/{body['id']}")
    listed = api_client.get("/api/chatbots/")
    assert read.json()["require_signed_webhooks"] is True
    assert "webhook_signing_secret" not in read.json() and signing_secret not in read.content.decode()
    assert signing_secret not in listed.content.decode()

    bot = ChatBot.objects.get(pk=body["id"])
    bot.plain_secret = body["secret_token"]  # type: ignore[attr-defined]
    channel = ChannelFactory(chat_bot=bot, url=receiver.url)
    message = body_of(channel)
    assert post(bot, message, signed_headers(signing_secret, message)).status_code == 200


def test_the_flag_is_switched_through_the_api(api_client: APIClient, channel: Channel, bot: ChatBot) -> None:
    off = api_client.patch(f"/api/chatbots/{bot.pk}", {"require_signed_webhooks": False}, format="json")
    bad = api_client.patch(f"/api/chatbots/{bot.pk}", {"require_signed_webhooks": "yes"}, format="json")
    lookup_caches_clear()

    assert off.status_code == 200 and off.json()["require_signed_webhooks"] is False
    assert bad.status_code == 400 and set(bad.json()) == {"require_signed_webhooks"}
    assert post(bot, body_of(channel), {}).status_code == 200


def test_rotate_webhook_signing_secret_shows_the_new_one_once(
    api_client: APIClient, bot: ChatBot, channel: Channel
) -> None:
    old = bot.webhook_signing_secret

    response = api_client.post(f"/api/chatbots/{bot.pk}/rotate_webhook_signing_secret", {}, format="json")
    lookup_caches_clear()

    assert response.status_code == 200, response.content
    new = response.json()["webhook_signing_secret"]
    assert new.startswith("whsec_") and new != old
    assert response.json()["previous_webhook_signing_secret_until"] is None
    bot.refresh_from_db()
    assert bot.webhook_signing_secret == new
    first, second = body_of(channel, message_id="n-1"), body_of(channel, message_id="n-2")
    assert post(bot, first, signed_headers(old, first, webhook_id="1")).status_code == 401
    assert post(bot, second, signed_headers(new, second, webhook_id="2")).status_code == 200


def test_rotate_with_an_overlap_and_bad_overlaps(api_client: APIClient, bot: ChatBot) -> None:
    url = f"/api/chatbots/{bot.pk}/rotate_webhook_signing_secret"
    rotated = api_client.post(url, {"overlap_minutes": 60}, format="json")

    assert rotated.status_code == 200
    assert rotated.json()["previous_webhook_signing_secret_until"] is not None
    for bad in ({"overlap_minutes": -1}, {"overlap_minutes": "60"}, {"overlap_minutes": 10**9}):
        assert api_client.post(url, bad, format="json").status_code == 400, bad


def test_only_users_who_may_change_the_bot_can_rotate_it(django_user_model: Any, bot: ChatBot) -> None:
    from django.contrib.auth.models import Permission

    viewer = django_user_model.objects.create_user(username="viewer", password="viewer-pass-123", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_chatbot"))
    client = APIClient()
    client.force_authenticate(viewer)

    response = client.post(f"/api/chatbots/{bot.pk}/rotate_webhook_signing_secret", {}, format="json")

    assert response.status_code == 403
    assert bot.webhook_signing_secret not in response.content.decode()
    assert ChatBot.objects.get(pk=bot.pk).webhook_signing_secret == bot.webhook_signing_secret
