"""The burst reply policy through real processes: gunicorn and `manage.py run_worker` as `make
run` starts them, a real local receiver, and a worker killed with SIGKILL mid-burst."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator

import pytest
from django.conf import settings

from channels_app.tests.factories import ChannelFactory
from chatbots.models import ChatBot
from chatbots.tests.factories import ChatBotFactory
from devtools.receiver import ChannelReceiver, Reply
from dialogues.models import Message
from tests.fault.test_worker import message, send, wait_until
from tests.support.live_server import LiveServer

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def receiver() -> Iterator[ChannelReceiver]:
    server = ChannelReceiver().start()
    yield server
    server.stop()


def _stack(**env: str) -> LiveServer:
    base = {"DELIVERY_RETRY_BASE_S": "0.2", "DELIVERY_RETRY_MAX_S": "0.5", "CHANNEL_ATTEMPT_TIMEOUT_S": "2"}
    return LiveServer(db_name=settings.DATABASES["default"]["NAME"], env={**base, **env}, worker=True).start()


def _burst_bot(*, quiet_ms: int, max_wait_ms: int) -> ChatBot:
    return ChatBotFactory(reply_policy="burst", burst_quiet_ms=quiet_ms, burst_max_wait_ms=max_wait_ms)


def test_a_customer_who_keeps_writing_is_answered_within_the_longest_wait(receiver: ChannelReceiver) -> None:
    """A message every 250 ms for 5 s, never quiet for the 2 s the bot waits: the first reply
    comes about 1.5 s (`burst_max_wait_ms`) after the first message, while the customer is
    still writing, and every message is answered exactly once."""
    stack = _stack()
    try:
        bot = _burst_bot(quiet_ms=2000, max_wait_ms=1500)
        channel = ChannelFactory(chat_bot=bot, url=receiver.url)
        sent_at: list[float] = []
        for number in range(20):
            assert send(stack, bot.plain_secret, message(channel, number))[0] == 200
            sent_at.append(time.monotonic())
            time.sleep(0.25)
        total = len(sent_at)
        assert wait_until(lambda: sum(len(r.json["answers"]) for r in receiver.requests) >= total, 15)
        first = receiver.requests[0]
        # Answered while the customer was still writing (well before the last message).
        # Answered while the customer was still writing: 1.5 s after the first message is due,
        # the last one is sent after 5 s (the gap leaves room for a busy machine).
        assert first.at < sent_at[-1]
        assert first.json["answers"][0] == "m-0" and len(first.json["answers"]) < total
        answered = [answer for request in receiver.requests for answer in request.json["answers"]]
        assert sorted(answered) == sorted(f"m-{n}" for n in range(total))  # each once
        assert len(receiver.requests) >= 2
    finally:
        stack.stop()


def test_kill_9_mid_burst_sends_its_reply_again_under_the_same_key_however_the_burst_grew(
    receiver: ChannelReceiver,
) -> None:
    """The worker dies while its POST of a burst's reply is in flight (the receiver holds it).
    The customer writes again meanwhile. The next worker sends that reply again, with the same
    id and the same `answers`, and answers the new message on its own: never a second reply to
    the first burst."""
    stack = _stack(LLM_TIMEOUT_S="1")
    try:
        bot = _burst_bot(quiet_ms=200, max_wait_ms=5000)
        channel = ChannelFactory(chat_bot=bot, url=receiver.url)
        held = Reply(release=threading.Event(), hold_s=20)
        receiver.default = held
        for number in range(4):
            assert send(stack, bot.plain_secret, message(channel, number))[0] == 200
        assert wait_until(lambda: len(receiver.requests) >= 1, 15)
        assert stack.worker is not None
        stack.worker.kill()
        receiver.default = Reply()
        held.release.set()
        first = receiver.requests[0]
        assert first.json["answers"] == ["m-0", "m-1", "m-2", "m-3"]

        assert send(stack, bot.plain_secret, message(channel, 4))[0] == 200
        stack.worker.start()
        # The dead worker's lease runs out (LLM_TIMEOUT_S + CHANNEL_ATTEMPT_TIMEOUT_S + 10 s).
        assert wait_until(lambda: len(receiver.requests) >= 3, 40), [r.json for r in receiver.requests]
        time.sleep(1.0)  # nothing more arrives
        keys = Counter(r.headers["webhook-id"] for r in receiver.requests)
        assert keys[first.headers["webhook-id"]] == 2 and len(keys) == 2, keys
        again = [r for r in receiver.requests[1:] if r.headers["webhook-id"] == first.headers["webhook-id"]]
        assert again[0].json == first.json
        last = next(r for r in receiver.requests if r.headers["webhook-id"] != first.headers["webhook-id"])
        assert last.json["answers"] == ["m-4"]
        assert wait_until(
            lambda: set(Message.objects.filter(role="USER").values_list("reply_state", flat=True)) == {"replied"}, 10
        )
        replies = Message.objects.filter(role="ASSISTANT")
        assert replies.count() == 2 and {m.delivery_state for m in replies} == {"delivered"}
    finally:
        stack.stop()
