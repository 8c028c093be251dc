"""Replies and operators' messages to a VK channel, against the local fake of the VK API."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from typing import Any

import pytest
from django.urls import reverse

from channels_app.dispatch import AttemptOutcome, channel_send, channel_typing_send, reply_payload
from channels_app.kinds import kind_get
from channels_app.kinds.vk.client import MESSAGE_MAX_LENGTH, random_id_for, text_split
from channels_app.kinds.vk.tests.conftest import ACCESS_TOKEN, GROUP_ID
from channels_app.kinds.vk.tests.fake_vk import FakeVk, fixture
from channels_app.models import Channel

pytestmark = pytest.mark.django_db

PEER = "987654321"


def _send(
    channel: Channel, text: str = "We open at 10.", key: str = "reply-1", role: str = "ASSISTANT"
) -> AttemptOutcome:
    payload = reply_payload(message_id=key, text=text, chat_id=PEER, in_reply_to="vk-123456-4242")
    payload["role"] = role
    return channel_send(channel=channel, payload=payload, idempotency_key=key, log_context={"channel": "t"})


def test_a_reply_goes_out_by_messages_send(vk_channel: Channel, fake_vk: FakeVk) -> None:
    outcome = _send(vk_channel)
    assert outcome.ok and outcome.status_code == 200
    [call] = fake_vk.calls_of("messages.send")
    assert call.content_type.startswith("application/x-www-form-urlencoded")
    assert call.form["peer_id"] == PEER and call.form["message"] == "We open at 10."
    assert call.form["access_token"] == ACCESS_TOKEN and call.form["v"] == "5.199"
    assert 0 < int(call.form["random_id"]) <= 0x7FFFFFFF


def test_a_repeat_has_the_same_random_id_and_vk_drops_it(vk_channel: Channel, fake_vk: FakeVk) -> None:
    assert _send(vk_channel, key="reply-7").ok
    assert _send(vk_channel, key="reply-7").ok
    first, second = fake_vk.calls_of("messages.send")
    assert first.form["random_id"] == second.form["random_id"] == str(random_id_for("reply-7:0"))
    assert len(fake_vk.delivered) == 1
    assert _send(vk_channel, key="reply-8").ok
    assert fake_vk.calls_of("messages.send")[-1].form["random_id"] != first.form["random_id"]


def test_an_operators_message_goes_out_the_same_way(vk_channel: Channel, fake_vk: FakeVk) -> None:
    assert _send(vk_channel, text="Anna here.", key="employee-1", role="EMPLOYEE").ok
    [delivered] = fake_vk.delivered
    assert (delivered["peer_id"], delivered["message"]) == (PEER, "Anna here.")


def test_too_many_requests_is_retried_after_a_second(vk_channel: Channel, fake_vk: FakeVk) -> None:
    fake_vk.then("messages.send", fixture("api_error_6.json"))
    outcome = _send(vk_channel)
    assert not outcome.ok and not outcome.permanent
    assert outcome.retry_after_s == 1.0
    assert outcome.error == "VK error 6: Too many requests per second"


@pytest.mark.parametrize("code", [9, 10])
def test_flood_control_and_vk_server_errors_are_retried(vk_channel: Channel, fake_vk: FakeVk, code: int) -> None:
    fake_vk.then("messages.send", {"error": {"error_code": code, "error_msg": "later"}})
    outcome = _send(vk_channel)
    assert not outcome.ok and not outcome.permanent


@pytest.mark.parametrize("code", [901, 7, 15, 100, 5])
def test_other_vk_errors_are_final(vk_channel: Channel, fake_vk: FakeVk, code: int) -> None:
    body = fixture("api_error_901.json")
    body["error"]["error_code"] = code
    fake_vk.then("messages.send", body)
    outcome = _send(vk_channel)
    assert not outcome.ok and outcome.permanent
    assert outcome.error.startswith(f"VK error {code}: ")


@pytest.mark.parametrize(("status", "permanent"), [(502, False), (500, False), (429, False), (404, True)])
def test_http_errors(vk_channel: Channel, fake_vk: FakeVk, status: int, permanent: bool) -> None:
    fake_vk.then("messages.send", {"detail": "proxy"}, status=status)
    outcome = _send(vk_channel)
    assert not outcome.ok and outcome.permanent is permanent


def test_an_unreachable_api_is_retried(vk_channel: Channel, fake_vk: FakeVk) -> None:
    fake_vk.stop()
    outcome = _send(vk_channel)
    assert not outcome.ok and not outcome.permanent and not fake_vk.delivered


def test_a_chat_that_is_no_vk_peer_is_final(vk_channel: Channel, fake_vk: FakeVk) -> None:
    payload = reply_payload(message_id="r", text="x", chat_id="tg-42", in_reply_to=None)
    outcome = channel_send(channel=vk_channel, payload=payload, idempotency_key="r", log_context={})
    assert not outcome.ok and outcome.permanent and fake_vk.calls == []


def _long_text() -> str:
    sentences = [f"Sentence number {n} says something about flowers." for n in range(300)]
    return " ".join(sentences[:150]) + "\n" + " ".join(sentences[150:])


def test_a_long_text_is_split_at_sentences_and_lines(vk_channel: Channel, fake_vk: FakeVk) -> None:
    text = _long_text()
    assert len(text) > 2 * MESSAGE_MAX_LENGTH
    assert _send(vk_channel, text=text, key="long-1").ok
    parts = [call.form["message"] for call in fake_vk.calls_of("messages.send")]
    assert len(parts) == 4 and all(len(part) <= MESSAGE_MAX_LENGTH for part in parts)
    assert all(part.endswith(".") for part in parts)  # never inside a sentence
    assert re.sub(r"\s+", " ", " ".join(parts)) == re.sub(r"\s+", " ", text)
    random_ids = [call.form["random_id"] for call in fake_vk.calls_of("messages.send")]
    assert random_ids == [str(random_id_for(f"long-1:{index}")) for index in range(4)]


def test_a_retry_after_a_partial_failure_sends_each_part_once(vk_channel: Channel, fake_vk: FakeVk) -> None:
    text = _long_text()
    # The first two parts go out, the third meets the rate limit: the worker retries the reply.
    fake_vk.then("messages.send", None)
    fake_vk.then("messages.send", None)
    fake_vk.then("messages.send", fixture("api_error_6.json"))
    assert not _send(vk_channel, text=text, key="long-2").ok
    assert len(fake_vk.delivered) == 2
    assert _send(vk_channel, text=text, key="long-2").ok
    # The retry sent the first two parts again under the same random_ids: VK dropped them.
    assert len(fake_vk.calls_of("messages.send")) == 3 + 4
    assert [form["message"] for form in fake_vk.delivered] == text_split(text)


def test_typing_on_is_set_activity_and_off_is_nothing(vk_channel: Channel, fake_vk: FakeVk) -> None:
    outcome = channel_typing_send(channel=vk_channel, chat_id=PEER, state="on", log_context={})
    assert outcome is not None and outcome.ok
    [call] = fake_vk.calls_of("messages.setActivity")
    assert (call.form["peer_id"], call.form["type"], call.form["group_id"]) == (PEER, "typing", str(GROUP_ID))
    assert channel_typing_send(channel=vk_channel, chat_id=PEER, state="off", log_context={}) is None
    assert len(fake_vk.calls) == 1


def test_the_test_button_checks_the_key_with_groups_get_by_id(vk_channel: Channel, fake_vk: FakeVk) -> None:
    kind = kind_get("vk")
    assert kind.test_send(channel=vk_channel, log_context={}).ok
    [call] = fake_vk.calls_of("groups.getById")
    assert call.form["access_token"] == ACCESS_TOKEN and call.form["group_id"] == str(GROUP_ID)
    fake_vk.then("groups.getById", fixture("api_error_5.json"))
    outcome = kind.test_send(channel=vk_channel, log_context={})
    assert not outcome.ok and outcome.permanent and outcome.error.startswith("VK error 5: ")
    assert fake_vk.delivered == []


def test_the_token_is_never_logged(vk_channel: Channel, fake_vk: FakeVk, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    fake_vk.then("messages.send", fixture("api_error_901.json"))
    _send(vk_channel)
    _send(vk_channel, key="again")
    kind_get("vk").test_send(channel=vk_channel, log_context={})
    assert caplog.records
    for record in caplog.records:
        assert ACCESS_TOKEN not in record.getMessage() and ACCESS_TOKEN not in repr(record.__dict__)


def test_text_split_cuts_a_word_longer_than_a_message() -> None:
    word = "x" * (MESSAGE_MAX_LENGTH + 10)
    assert text_split(word) == ["x" * MESSAGE_MAX_LENGTH, "x" * 10]
    assert text_split("short") == ["short"]


def test_a_vk_message_is_answered_and_an_operators_message_delivered_by_the_worker(
    vk_channel: Channel, fake_vk: FakeVk, anon_client: Any, drain: Callable[[], None], staff_user: Any
) -> None:
    """The whole way: VK's event, the ingest, the worker's reply (the mock LLM), messages.send;
    then an operator's message from our side, through the same worker."""
    from dialogues.models import Dialogue, Message
    from dialogues.services_operators import operator_message_send

    url = reverse("vk-callback", args=[str(vk_channel.pk)])
    event = json.dumps(fixture("callback_message_new.json"))
    assert anon_client.post(url, data=event, content_type="application/json").content == b"ok"
    drain()
    reply = Message.objects.get(channel_id=vk_channel.pk, role=Message.Role.ASSISTANT)
    assert reply.delivery_state == "delivered"
    [sent] = fake_vk.delivered
    assert (sent["peer_id"], sent["message"]) == (PEER, reply.text)
    assert sent["random_id"] == str(random_id_for(f"{reply.message_id}:0"))

    dialogue = Dialogue.objects.get(pk=reply.dialogue_id)
    operator = operator_message_send(dialogue=dialogue, author=staff_user, text="Anna here, we open at 10.")
    drain()
    assert Message.objects.get(pk=operator.pk).delivery_state == "delivered"
    assert [(form["peer_id"], form["message"]) for form in fake_vk.delivered[1:]] == [
        (PEER, "Anna here, we open at 10.")
    ]
