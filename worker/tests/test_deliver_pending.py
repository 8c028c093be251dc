"""`manage.py deliver_pending` (the operator's "deliver now") and `manage.py run_worker` (the
always-on worker), against a real local receiver playing the channel."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.test import override_settings
from django.utils import timezone

from channels_app.services import channel_set_active
from channels_app.tests.factories import ChannelFactory
from core.caching import lookup_caches_clear
from devtools.embedded_mongo import EmbeddedMongo
from devtools.receiver import ChannelReceiver, Reply
from dialogues.models import Dialogue, Message
from dialogues.store.collections import dialogues_collection
from dialogues.tests.conftest import customer_message
from tests.support.live_server import WorkerProcess

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]
Drain = Callable[[], None]


def deliver_pending(*args: str) -> str:
    """One run, as a fresh process would do it: nothing cached from before."""
    lookup_caches_clear()
    out = StringIO()
    call_command("deliver_pending", *args, stdout=out)
    return out.getvalue()


def replies() -> list[Message]:
    return list(Message.objects.filter(role=Message.Role.ASSISTANT))


def test_channel_down_then_deliver_pending_delivers_exactly_once(channel, post_webhook, receiver) -> None:
    receiver.default = Reply(status=503)
    assert post_webhook(customer_message(channel, message_id="m-1")).json()["reply_pending"] is True
    deliver_pending()
    [reply] = replies()
    assert reply.delivery_state == "failed" and reply.delivery_attempts == 1
    assert reply.next_attempt_at is not None and reply.next_attempt_at > timezone.now()

    # Its retry is due later; deliver_pending makes it due now.
    assert deliver_pending().startswith("made 1 waiting dialogue(s) due")
    reply.refresh_from_db()
    assert reply.delivery_state == "failed" and reply.delivery_attempts == 2

    receiver.default = Reply(status=200)
    assert deliver_pending().startswith("made 1 waiting dialogue(s) due; worked on 1 dialogue(s), 0 error(s)")
    assert deliver_pending().startswith("made 0 waiting dialogue(s) due; worked on 0 dialogue(s), 0 error(s)")

    bodies = [r.json for r in receiver.requests]
    assert len(bodies) == 3 and bodies[0] == bodies[1] == bodies[2]
    assert {r.headers["webhook-id"] for r in receiver.requests} == {reply.message_id}
    reply.refresh_from_db()
    assert reply.delivery_state == "delivered" and reply.delivery_attempts == 3 and reply.delivered_at
    channel.refresh_from_db()
    assert channel.last_delivery_state == "delivered"


@override_settings(DELIVERY_MAX_ATTEMPTS=3)
def test_reply_is_dead_after_the_maximum_attempts(channel, post_webhook, receiver) -> None:
    receiver.default = Reply(status=500)
    post_webhook(customer_message(channel, message_id="m-1"))
    deliver_pending()
    deliver_pending()
    deliver_pending()
    assert deliver_pending().startswith("made 0 waiting dialogue(s) due; worked on 0")  # nothing left to try

    [reply] = replies()
    assert reply.delivery_state == "dead"
    assert reply.delivery_attempts == 3
    assert reply.next_attempt_at is None
    assert len(receiver.requests) == 3
    dialogue = dialogues_collection().find_one({"_id": reply.dialogue_id})
    assert "work_due_at" not in dialogue  # a dead reply holds nothing up


@override_settings(DELIVERY_RETRY_BASE_S=60, DELIVERY_RETRY_MAX_S=60)
def test_the_worker_respects_the_backoff_and_deliver_pending_does_not(
    channel, post_webhook, receiver, drain: Drain
) -> None:
    receiver.default = Reply(status=500)
    post_webhook(customer_message(channel, message_id="m-1"))
    drain()
    receiver.default = Reply(status=200)

    drain()  # the always-on worker waits for the retry, about a minute from now
    assert len(receiver.requests) == 1
    [reply] = replies()
    assert reply.delivery_state == "failed"

    assert deliver_pending().startswith("made 1 waiting dialogue(s) due")
    assert len(receiver.requests) == 2
    reply.refresh_from_db()
    assert reply.delivery_state == "delivered" and reply.delivery_attempts == 2


def test_llm_error_leaves_the_message_awaiting_and_a_later_run_generates_it(channel, post_webhook, receiver) -> None:
    with override_settings(LLM_BACKEND="llm.tests.backends.always_failing"):
        assert post_webhook(customer_message(channel, message_id="m-1")).json()["reply_pending"] is True
        deliver_pending()
    assert receiver.requests == []
    user = Message.objects.get(role=Message.Role.USER)
    assert user.reply_state == Message.ReplyState.AWAITING and user.llm_attempts == 1
    assert user.next_attempt_at is not None and user.next_attempt_at > timezone.now()
    assert replies() == []

    assert deliver_pending().startswith("made 1 waiting dialogue(s) due")
    assert deliver_pending().startswith("made 0 waiting dialogue(s) due; worked on 0")

    user.refresh_from_db()
    assert user.reply_state == Message.ReplyState.REPLIED
    [reply] = replies()
    assert reply.in_reply_to == "m-1" and reply.delivery_state == "delivered"
    assert reply.llm_attempts == 2
    [received] = receiver.requests
    assert received.json["in_reply_to"] == "m-1" and received.json["text"] == reply.text
    assert Dialogue.objects.get().message_count == 2


def test_a_dialogue_another_worker_holds_is_left_alone(claim_next, channel, post_webhook, receiver) -> None:
    post_webhook(customer_message(channel, message_id="m-1"))
    time.sleep(0.01)  # the dialogue is due a few milliseconds after the webhook
    held = claim_next()
    assert held is not None

    assert deliver_pending().startswith("made 0 waiting dialogue(s) due; worked on 0 dialogue(s)")
    assert receiver.requests == [] and replies() == []

    # That worker died: once its lease expires, the next run takes over.
    dialogues_collection().update_one({"_id": held.dialogue_id}, {"$set": {"claim_until": timezone.now()}})
    deliver_pending()
    assert [r.json["in_reply_to"] for r in receiver.requests] == ["m-1"]


def test_inactive_channel_parks_its_reply_and_resumes_when_active_again(channel, post_webhook, receiver) -> None:
    receiver.default = Reply(status=500)
    post_webhook(customer_message(channel, message_id="m-1"))
    deliver_pending()
    channel_set_active(channel=channel, is_active=False)
    receiver.default = Reply(status=200)

    deliver_pending()
    [reply] = replies()
    assert reply.delivery_state == "parked" and reply.last_error == "The channel is inactive"
    assert len(receiver.requests) == 1
    assert dialogues_collection().find_one({"_id": reply.dialogue_id})["parked"] == "The channel is inactive"

    channel_set_active(channel=channel, is_active=True)
    deliver_pending()
    reply.refresh_from_db()
    assert reply.delivery_state == "delivered"
    assert len(receiver.requests) == 2
    assert "parked" not in dialogues_collection().find_one({"_id": reply.dialogue_id})


@override_settings(WORKER_CHANNEL_CONCURRENCY=4)
def test_deliver_pending_works_through_more_than_a_channels_share_at_once(bot, post_webhook, receiver) -> None:
    """30 chats of one channel owed at once: the channel takes 4 attempts at a time from a
    worker, and "deliver now" still delivers all of them before it exits."""
    receiver.default = Reply(status=200, delay_s=0.2)
    channel = ChannelFactory(chat_bot=bot, url=receiver.url)
    for index in range(30):
        post_webhook(customer_message(channel, message_id=f"m-{index}", chat_id=f"chat-{index}",
                                      channel_id=str(channel.pk)))  # fmt: skip

    deliver_pending()

    assert Message.objects.filter(role=Message.Role.ASSISTANT, delivery_state="delivered").count() == 30
    assert sorted(r.json["in_reply_to"] for r in receiver.requests) == sorted(f"m-{n}" for n in range(30))


def test_deliver_pending_after_an_outage_that_opened_the_breaker_delivers_everything(
    bot, post_webhook, receiver
) -> None:
    """The channel was down long enough for its breaker to open; it is back, and the operator
    asks for delivery now."""
    receiver.default = Reply(status=503)
    channel = ChannelFactory(chat_bot=bot, url=receiver.url)
    for index in range(settings.WORKER_BREAKER_THRESHOLD + 1):
        post_webhook(customer_message(channel, message_id=f"m-{index}", chat_id=f"chat-{index}",
                                      channel_id=str(channel.pk)))  # fmt: skip
    deliver_pending()
    channel.refresh_from_db()
    assert channel.breaker_open_until is not None
    receiver.default = Reply(status=200)

    deliver_pending()

    owed = settings.WORKER_BREAKER_THRESHOLD + 1
    assert Message.objects.filter(role=Message.Role.ASSISTANT, delivery_state="delivered").count() == owed


def manage_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings_test",
        MONGO_DB_NAME=settings.DATABASES["default"]["NAME"],
        CHANNEL_ALLOW_PRIVATE_URLS="true",
    )
    env.update(extra)
    return env


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_two_deliver_pending_processes_never_deliver_a_reply_twice(bot, post_webhook, receiver, drain) -> None:
    receiver.default = Reply(status=503)
    channels = [ChannelFactory(chat_bot=bot, url=receiver.url) for _ in range(30)]
    for index, channel in enumerate(channels):
        post_webhook(customer_message(channel, message_id=f"m-{index}"))
    drain()
    assert Message.objects.filter(role=Message.Role.ASSISTANT, delivery_state="failed").count() == 30
    # Failed once, or twice when the drain outlasted the first retry's backoff (a slow machine).
    failed_attempts = dict(Message.objects.filter(role=Message.Role.ASSISTANT).values_list("pk", "delivery_attempts"))
    receiver.reset()
    # Slow enough answers that the two processes overlap on the backlog.
    receiver.default = Reply(status=200, delay_s=0.05)

    command = [sys.executable, "manage.py", "deliver_pending"]
    runs = [
        subprocess.Popen(command, cwd=ROOT, env=manage_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    outputs = [run.communicate(timeout=120) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs

    delivered_ids = Counter(r.json["message_id"] for r in receiver.requests)
    assert len(delivered_ids) == 30
    assert set(delivered_ids.values()) == {1}
    assert Message.objects.filter(role=Message.Role.ASSISTANT, delivery_state="delivered").count() == 30
    attempts = dict(Message.objects.filter(role=Message.Role.ASSISTANT).values_list("pk", "delivery_attempts"))
    assert {pk: count - failed_attempts[pk] for pk, count in attempts.items()} == dict.fromkeys(attempts, 1)


SETUP = """
import json
from channels_app.services import channel_create
from chatbots.services import chatbot_create
bot, secret = chatbot_create(name="outage")
channel = channel_create(chat_bot=bot, name="outage", url={url!r})
print(json.dumps({{"bot": str(bot.pk), "channel": str(channel.pk)}}))
"""
SEND = """
from chatbots.models import ChatBot
from dialogues.ingest import webhook_message_process
bot = ChatBot.objects.get(pk={bot!r})
webhook_message_process(chat_bot=bot, chat_id={channel!r}, text="hello", message_sender="customer", message_id={mid!r})
"""


def own_manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.fixture
def own_database(tmp_path: Path) -> Iterator[tuple[EmbeddedMongo, dict[str, str]]]:
    """A database of this test's own, on disk, so that it can be stopped and started again on
    the same port with the same data."""
    mongo = EmbeddedMongo(storage=str(tmp_path / "db")).start()
    env = manage_env(
        MONGO_URL=mongo.url,
        MONGO_DB_NAME="worker_db_outage",
        MONGO_TIMEOUT_MS="1000",
        # The failed reply's retry falls due while the database is away.
        DELIVERY_RETRY_BASE_S="3",
        DELIVERY_RETRY_MAX_S="3",
    )
    migrated = own_manage(env, "migrate", "--no-input", "-v", "0")
    assert migrated.returncode == 0, migrated.stderr
    yield mongo, env
    mongo.stop()


@pytest.mark.slow
def test_the_always_on_worker_survives_a_database_outage_and_delivers_afterwards(
    own_database: tuple[EmbeddedMongo, dict[str, str]], receiver: ChannelReceiver
) -> None:
    mongo, env = own_database
    created = own_manage(env, "shell", "-c", SETUP.format(url=receiver.url))
    assert created.returncode == 0, created.stderr
    ids = json.loads(created.stdout.strip().splitlines()[-1])

    def send(message_id: str) -> None:
        sent = own_manage(env, "shell", "-c", SEND.format(bot=ids["bot"], channel=ids["channel"], mid=message_id))
        assert sent.returncode == 0, sent.stderr

    worker = WorkerProcess(env=env, name=f"db-outage-{mongo.port}").start()
    try:
        receiver.then(Reply(status=503))
        send("before")
        assert len(receiver.wait_for(1, timeout=15)) == 1  # tried once, failed: owed

        mongo.stop()
        time.sleep(4)  # the worker keeps looking for work and finds no database
        assert worker.process is not None and worker.process.poll() is None
        assert len(receiver.requests) == 1
        mongo.start()

        send("after")
        received = receiver.wait_for(3, timeout=30)
        time.sleep(0.5)  # nothing more arrives
        assert worker.process.poll() is None, worker.log_text()
    finally:
        worker.stop()

    assert sorted(r.json["in_reply_to"] for r in received) == ["after", "before", "before"]
    assert len(receiver.requests) == 3
    log = worker.log_text()
    assert "database unavailable" in log
    assert "Traceback" not in log, log
