"""Signed replies (Standard Webhooks): the headers, the secret's life cycle (create, rotate with
an overlap) and what a real receiver gets from the worker, checked with the `standardwebhooks`
package's own verifier, as integrators would check them."""

from __future__ import annotations

import importlib
import json
import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta

import pytest
import responses
from django.test import override_settings
from django.utils import timezone
from rest_framework.test import APIClient
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from channels_app.dispatch import channel_attempt
from channels_app.models import Channel
from channels_app.services import (
    channel_signing_secret_rotate,
    channel_signing_secrets,
    generate_signing_secret,
)
from channels_app.tests.factories import ChannelFactory
from chatbots.tests.factories import ChatBotFactory
from devtools.receiver import ChannelReceiver

URL = "https://channel.example.com/hook"
TOKEN = "tok-secret-4711"
PAYLOAD = {"message_id": "r-1", "role": "ASSISTANT", "text": "Привет, ünïcode", "chat_id": "c-1", "in_reply_to": "m-1"}
CHANNEL_READ_KEYS = {"id", "name", "chat_bot_id", "url", "kind", "options", "is_active", "typing_events", "token"}


def _headers(call: responses.Call) -> dict[str, str]:
    return {k: v for k, v in call.request.headers.items() if isinstance(v, str)}


def _body(call: responses.Call) -> bytes:
    body = call.request.body
    assert isinstance(body, bytes)
    return body


def _verifies(secret: str, body: bytes, headers: dict[str, str]) -> bool:
    try:
        Webhook(secret).verify(body, headers)
    except WebhookVerificationError:
        return False
    return True


# --- The headers, against `responses` ------------------------------------------------------------


def test_generated_secrets_are_standard_webhooks_secrets() -> None:
    secret = generate_signing_secret()
    assert secret.startswith("whsec_") and len(secret) == 50
    assert secret != generate_signing_secret()
    # The reference verifier decodes it to the 32 random bytes (standard base64, not URL-safe).
    assert len(Webhook(secret)._whsecret) == 32


@responses.activate
def test_a_signed_attempt_verifies_with_the_reference_library(caplog: pytest.LogCaptureFixture) -> None:
    responses.post(URL, status=200)
    secret = generate_signing_secret()
    caplog.set_level(logging.DEBUG)

    before = int(time.time())
    outcome = channel_attempt(
        url=URL, token=TOKEN, payload=PAYLOAD, idempotency_key="r-1", signing_secrets=[secret], log_context={}
    )

    assert outcome.ok
    [call] = responses.calls
    headers, body = _headers(call), _body(call)
    assert json.loads(body) == PAYLOAD
    assert Webhook(secret).verify(body, headers) == PAYLOAD
    assert headers["webhook-id"] == "r-1"
    assert before <= int(headers["webhook-timestamp"]) <= int(time.time())
    assert headers["webhook-signature"].startswith("v1,") and " " not in headers["webhook-signature"]
    # The existing contract is unchanged: the channel's token still comes with every reply.
    assert headers["x-chat_auth_token"] == f"Bearer {TOKEN}"
    # Another secret, another body or another id does not verify.
    assert not _verifies(generate_signing_secret(), body, headers)
    assert not _verifies(secret, body.replace(b"c-1", b"c-2"), headers)
    assert not _verifies(secret, body, {**headers, "webhook-id": "r-2"})
    assert secret not in caplog.text and headers["webhook-signature"] not in caplog.text


@responses.activate
def test_unsigned_without_secrets_and_a_caller_cannot_override_the_signature() -> None:
    responses.post(URL, status=200)
    channel_attempt(url=URL, token=TOKEN, payload=PAYLOAD, idempotency_key="r-1")
    assert "webhook-signature" not in responses.calls[0].request.headers

    secret = generate_signing_secret()
    channel_attempt(
        url=URL,
        token=TOKEN,
        payload=PAYLOAD,
        idempotency_key="r-1",
        signing_secrets=[secret],
        extra_headers={"webhook-signature": "v1,Zm9yZ2Vk", "webhook-timestamp": "1"},
    )
    call = responses.calls[1]
    assert Webhook(secret).verify(_body(call), _headers(call)) == PAYLOAD


@responses.activate
def test_a_retry_keeps_the_id_and_gets_a_fresh_timestamp_and_signature() -> None:
    responses.post(URL, status=503)
    secret = generate_signing_secret()
    channel_attempt(url=URL, token=TOKEN, payload=PAYLOAD, idempotency_key="r-1", signing_secrets=[secret])
    first = _headers(responses.calls[0])
    time.sleep(1.05)
    channel_attempt(url=URL, token=TOKEN, payload=PAYLOAD, idempotency_key="r-1", signing_secrets=[secret])
    second = _headers(responses.calls[1])
    assert first["webhook-id"] == second["webhook-id"] == "r-1"
    assert int(second["webhook-timestamp"]) > int(first["webhook-timestamp"])
    assert first["webhook-signature"] != second["webhook-signature"]
    assert Webhook(secret).verify(_body(responses.calls[1]), second) == PAYLOAD


@responses.activate
def test_a_text_that_is_not_valid_utf8_is_escaped_so_the_signature_still_covers_the_bytes() -> None:
    responses.post(URL, status=200)
    secret = generate_signing_secret()
    payload = {**PAYLOAD, "text": "broken \ud800 surrogate"}
    assert channel_attempt(url=URL, token=TOKEN, payload=payload, idempotency_key="r-1", signing_secrets=[secret]).ok
    call = responses.calls[0]
    assert b"\\ud800" in _body(call)
    assert Webhook(secret).verify(_body(call), _headers(call))["text"] == payload["text"]


# --- Rotation with an overlap ----------------------------------------------------------------------


def _signed_post(channel: Channel, *, now: datetime | None = None) -> tuple[bytes, dict[str, str]]:
    with responses.RequestsMock() as mock:
        mock.post(URL, status=200)
        channel_attempt(
            url=URL,
            token=channel.settings.token,
            payload=PAYLOAD,
            idempotency_key="r-1",
            signing_secrets=channel_signing_secrets(channel=channel, now=now),
        )
        call = mock.calls[0]
        return _body(call), _headers(call)


@pytest.mark.django_db
def test_during_the_overlap_old_and_new_secrets_verify_and_after_it_only_the_new() -> None:
    channel = ChannelFactory(url=URL)
    old = channel.signing_secret
    assert old.startswith("whsec_")
    body, headers = _signed_post(channel)
    assert _verifies(old, body, headers)

    new = channel_signing_secret_rotate(channel=channel, overlap_s=3600)

    stored = Channel.objects.get(pk=channel.pk)
    assert new != old and stored.signing_secret == new and stored.previous_signing_secret == old
    assert stored.previous_signing_secret_until is not None
    assert timedelta(minutes=59) < stored.previous_signing_secret_until - timezone.now() <= timedelta(hours=1)
    assert channel_signing_secrets(channel=stored) == [new, old]
    body, headers = _signed_post(stored)
    assert len(headers["webhook-signature"].split(" ")) == 2
    assert _verifies(new, body, headers) and _verifies(old, body, headers)

    after = stored.previous_signing_secret_until + timedelta(seconds=1)
    assert channel_signing_secrets(channel=stored, now=after) == [new]
    body, headers = _signed_post(stored, now=after)
    assert _verifies(new, body, headers)
    assert not _verifies(old, body, headers)


@pytest.mark.django_db
@override_settings(CHANNEL_SIGNING_OVERLAP_S=120)
def test_the_overlap_defaults_to_the_setting_and_zero_drops_the_old_secret_at_once() -> None:
    channel = ChannelFactory(url=URL)
    channel_signing_secret_rotate(channel=channel)
    until = Channel.objects.get(pk=channel.pk).previous_signing_secret_until
    assert until is not None and timedelta(seconds=100) < until - timezone.now() <= timedelta(seconds=120)

    newest = channel_signing_secret_rotate(channel=channel, overlap_s=0)
    stored = Channel.objects.get(pk=channel.pk)
    assert stored.previous_signing_secret == "" and stored.previous_signing_secret_until is None
    assert channel_signing_secrets(channel=stored) == [newest]


@pytest.mark.django_db
def test_a_rotation_from_a_stale_copy_is_refused_rather_than_losing_a_shown_secret() -> None:
    channel = ChannelFactory(url=URL)
    stale = Channel.objects.get(pk=channel.pk)
    winner = channel_signing_secret_rotate(channel=channel)
    with pytest.raises(Exception, match="rotated at the same time"):
        channel_signing_secret_rotate(channel=stale)
    assert Channel.objects.get(pk=channel.pk).signing_secret == winner


@pytest.mark.django_db
def test_the_migration_gives_channels_made_before_signing_a_secret_each() -> None:
    from django.apps import apps

    migration = importlib.import_module("channels_app.migrations.0003_signing_secrets")
    first, second = ChannelFactory(url=URL), ChannelFactory(url=URL)
    Channel.objects.filter(pk__in=[first.pk, second.pk]).update(signing_secret="")  # as AddField leaves them

    migration.generate_signing_secrets(apps, None)

    secrets = [Channel.objects.get(pk=pk).signing_secret for pk in (first.pk, second.pk)]
    assert all(secret.startswith("whsec_") and len(Webhook(secret)._whsecret) == 32 for secret in secrets)
    assert secrets[0] != secrets[1]


# --- The API ------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_secret_is_shown_on_creation_and_never_in_reads(api_client: APIClient) -> None:
    body = {"name": "Web", "chat_bot_id": str(ChatBotFactory().pk), "url": URL}
    created = api_client.post("/api/channels/", body, format="json").json()
    assert set(created) == CHANNEL_READ_KEYS | {"signing_secret"}
    secret = created["signing_secret"]
    assert secret.startswith("whsec_") and Channel.objects.get(pk=created["id"]).signing_secret == secret

    for response in (
        api_client.get(f"/api/channels/{created['id']}"),
        api_client.get("/api/channels/"),
        api_client.get("/api/channels/?limit=5"),
        api_client.patch(f"/api/channels/{created['id']}", {"name": "Renamed"}, format="json"),
        api_client.post(f"/api/channels/{created['id']}/rotate_token"),
    ):
        assert response.status_code == 200
        assert secret not in response.content.decode()
        assert "signing_secret" not in response.content.decode()


@pytest.mark.django_db
def test_rotate_signing_secret_through_the_api(api_client: APIClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    channel = ChannelFactory(url=URL)
    old = channel.signing_secret

    response = api_client.post(
        f"/api/channels/{channel.pk}/rotate_signing_secret", {"overlap_minutes": 30}, format="json"
    )

    assert response.status_code == 200
    data = response.json()
    assert set(data) == CHANNEL_READ_KEYS | {"signing_secret", "previous_signing_secret_until"}
    stored = Channel.objects.get(pk=channel.pk)
    assert data["signing_secret"] == stored.signing_secret != old
    assert stored.previous_signing_secret == old and old not in response.content.decode()
    assert stored.previous_signing_secret_until is not None
    assert timedelta(minutes=29) < stored.previous_signing_secret_until - timezone.now() <= timedelta(minutes=30)
    assert data["previous_signing_secret_until"] is not None
    assert data["signing_secret"] not in caplog.text and old not in caplog.text

    # Without a body: the default overlap; with 0: none.
    assert api_client.post(f"/api/channels/{channel.pk}/rotate_signing_secret").status_code == 200
    zero = api_client.post(f"/api/channels/{channel.pk}/rotate_signing_secret", {"overlap_minutes": 0}, format="json")
    assert zero.status_code == 200 and zero.json()["previous_signing_secret_until"] is None
    assert channel_signing_secrets(channel=Channel.objects.get(pk=channel.pk)) == [zero.json()["signing_secret"]]


@pytest.mark.django_db
def test_rotate_signing_secret_errors(api_client: APIClient, anon_client: APIClient) -> None:
    channel = ChannelFactory(url=URL)
    path = f"/api/channels/{channel.pk}/rotate_signing_secret"
    for bad in ({"overlap_minutes": -1}, {"overlap_minutes": "soon"}, {"overlap_minutes": 10**9}):
        response = api_client.post(path, bad, format="json")
        assert response.status_code == 400 and "overlap_minutes" in response.json()
    assert api_client.post("/api/channels/0123456789abcdef01234567/rotate_signing_secret").status_code == 404
    assert api_client.post("/api/channels/nope/rotate_signing_secret").status_code == 404
    assert anon_client.post(path).status_code == 401
    assert Channel.objects.get(pk=channel.pk).signing_secret == channel.signing_secret


# --- Through the worker, to a real receiver ---------------------------------------------------------


@pytest.mark.django_db
def test_the_worker_delivers_replies_a_real_receiver_can_verify(
    receiver: ChannelReceiver, drain: Callable[[], None]
) -> None:
    bot = ChatBotFactory()
    channel = ChannelFactory(chat_bot=bot, url=receiver.url)
    old = channel.signing_secret
    body = {"message_id": "m-1", "chat_id": str(channel.pk), "text": "Hello", "message_sender": "customer"}
    headers = {"x-chatbot_auth_token": f"Bearer {bot.plain_secret}"}
    assert APIClient().post("/api/webhook/new_message", body, format="json", headers=headers).status_code == 200

    drain()

    [request] = receiver.requests
    reply = Webhook(old).verify(request.body, request.headers)
    assert reply["in_reply_to"] == "m-1" and request.headers["webhook-id"] == reply["message_id"]

    # Rotated: the next reply verifies with the new secret and, during the overlap, the old.
    new = channel_signing_secret_rotate(channel=channel, overlap_s=600)
    body = {**body, "message_id": "m-2"}
    assert APIClient().post("/api/webhook/new_message", body, format="json", headers=headers).status_code == 200
    drain()
    second = receiver.requests[1]
    assert Webhook(new).verify(second.body, second.headers)["in_reply_to"] == "m-2"
    assert Webhook(old).verify(second.body, second.headers)["in_reply_to"] == "m-2"
