from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from datetime import timedelta
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.test import override_settings

from channels_app.tests.factories import ChannelFactory
from core.errors import Conflict
from dialogues.delivery import pending_replies_deliver, reply_redeliver, utcnow
from dialogues.models import Dialogue, Message
from dialogues.services import webhook_message_process
from tests.support.receiver import Reply

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]


def process(channel, message_id: str):  # type: ignore[no-untyped-def]
    return webhook_message_process(
        chat_bot=channel.chat_bot, chat_id=str(channel.pk), text=f"text {message_id}", message_sender="customer",
        message_id=message_id,
    )  # fmt: skip


def deliver_pending(*args: str) -> str:
    out = StringIO()
    call_command("deliver_pending", *args, stdout=out)
    return out.getvalue()


@override_settings(CHANNEL_MAX_RETRIES=0)
def test_channel_down_then_deliver_pending_delivers_exactly_once(channel, receiver) -> None:
    receiver.default = Reply(status=503)
    assert process(channel, "m-1").delivery == "queued"
    assert deliver_pending().startswith("generated 0, delivered 0, failed 1")
    reply = Message.objects.get(role=Message.Role.ASSISTANT)
    assert reply.delivery_state == "failed" and reply.delivery_attempts == 2

    receiver.default = Reply(status=200)
    assert deliver_pending().startswith("generated 0, delivered 1")
    assert deliver_pending().startswith("generated 0, delivered 0, failed 0")

    bodies = [r.json for r in receiver.requests]
    assert len(bodies) == 3 and bodies[0] == bodies[1] == bodies[2]
    reply.refresh_from_db()
    assert reply.delivery_state == "delivered" and reply.delivery_attempts == 3 and reply.delivered_at
    channel.refresh_from_db()
    assert channel.last_delivery_state == "delivered"


@override_settings(CHANNEL_MAX_RETRIES=0, DELIVERY_MAX_ATTEMPTS=3)
def test_reply_is_dead_after_the_maximum_attempts(channel, receiver) -> None:
    receiver.default = Reply(status=500)
    process(channel, "m-1")
    deliver_pending()
    deliver_pending()
    deliver_pending()  # nothing left to try

    reply = Message.objects.get(role=Message.Role.ASSISTANT)
    assert reply.delivery_state == "dead"
    assert reply.delivery_attempts == 3
    assert reply.next_attempt_at is None
    assert len(receiver.requests) == 3


@override_settings(CHANNEL_MAX_RETRIES=0)
def test_loop_pass_respects_the_backoff_and_a_single_run_does_not(channel, receiver) -> None:
    receiver.default = Reply(status=500)
    process(channel, "m-1")
    receiver.default = Reply(status=200)

    counts = pending_replies_deliver(respect_schedule=True)
    assert counts.delivered == 0 and len(receiver.requests) == 1  # its next attempt is in the future

    Message.objects.filter(role=Message.Role.ASSISTANT).update(next_attempt_at=utcnow() - timedelta(seconds=1))
    counts = pending_replies_deliver(respect_schedule=True)
    assert counts.delivered == 1 and len(receiver.requests) == 2


def test_llm_error_leaves_the_reply_pending_and_a_later_run_generates_it(channel, receiver) -> None:
    with override_settings(LLM_BACKEND="dialogues.tests.test_processing.failing_llm"):
        result = process(channel, "m-1")
        assert result.reply_pending is True
        assert deliver_pending().startswith(
            "generated 0, delivered 0, failed 0, dead 0, skipped 0, generation failed 1"
        )
    assert receiver.requests == []

    assert deliver_pending().startswith("generated 1, delivered 1")
    assert deliver_pending().startswith("generated 0, delivered 0")

    user = Message.objects.get(role=Message.Role.USER)
    assert user.reply_state == Message.ReplyState.REPLIED
    reply = Message.objects.get(role=Message.Role.ASSISTANT)
    assert reply.in_reply_to == "m-1" and reply.delivery_state == "delivered"
    [received] = receiver.requests
    assert received.json["in_reply_to"] == "m-1" and received.json["text"] == reply.text
    assert Dialogue.objects.get().message_count == 2


def test_awaiting_message_whose_lease_is_live_is_left_alone(channel, receiver) -> None:
    with override_settings(LLM_BACKEND="dialogues.tests.test_processing.failing_llm"):
        process(channel, "m-1")
    Message.objects.filter(message_id="m-1").update(claimed_until=utcnow() + timedelta(seconds=30))
    assert deliver_pending().startswith("generated 0")
    assert receiver.requests == []


@override_settings(CHANNEL_MAX_RETRIES=0)
def test_inactive_channel_keeps_its_replies(channel, receiver) -> None:
    from channels_app.services import channel_set_active

    receiver.default = Reply(status=500)
    process(channel, "m-1")
    channel_set_active(channel=channel, is_active=False)
    receiver.default = Reply(status=200)
    assert "skipped 1" in deliver_pending()
    assert len(receiver.requests) == 1


@override_settings(CHANNEL_MAX_RETRIES=0, DELIVERY_MAX_ATTEMPTS=1)
def test_redeliver_revives_a_dead_reply(channel, receiver) -> None:
    receiver.default = Reply(status=500)
    process(channel, "m-1")
    reply = Message.objects.get(role=Message.Role.ASSISTANT)
    assert reply.delivery_state == "dead"

    receiver.default = Reply(status=200)
    reply = reply_redeliver(message=reply)

    assert reply.delivery_state == "delivered" and reply.delivery_attempts == 2
    assert reply.claimed_until is None
    assert len(receiver.requests) == 2
    with pytest.raises(Conflict):
        reply_redeliver(message=reply)
    assert len(receiver.requests) == 2


@override_settings(CHANNEL_MAX_RETRIES=0)
def test_redeliver_refuses_a_reply_someone_is_delivering(channel, receiver) -> None:
    receiver.default = Reply(status=500)
    process(channel, "m-1")
    Message.objects.filter(role=Message.Role.ASSISTANT).update(claimed_until=utcnow() + timedelta(seconds=30))
    reply = Message.objects.get(role=Message.Role.ASSISTANT)
    with pytest.raises(Conflict):
        reply_redeliver(message=reply)
    assert len(receiver.requests) == 1


@pytest.mark.slow
@override_settings(CHANNEL_MAX_RETRIES=0)
def test_two_deliver_pending_processes_never_deliver_a_reply_twice(bot, receiver) -> None:
    receiver.default = Reply(status=503)
    channels = [ChannelFactory(chat_bot=bot, url=receiver.url) for _ in range(3)]
    for index in range(30):
        process(channels[index % 3], f"m-{index}")
    assert Message.objects.filter(role=Message.Role.ASSISTANT, delivery_state="failed").count() == 30
    receiver.reset()
    # Slow enough answers that the two processes overlap on the backlog.
    receiver.default = Reply(status=200, delay_s=0.02)

    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings_test",
        MONGO__DB_NAME=settings.DATABASES["default"]["NAME"],
        CHANNEL_ALLOW_PRIVATE_URLS="true",
    )
    command = [sys.executable, "manage.py", "deliver_pending"]
    runs = [
        subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)
    ]
    outputs = [run.communicate(timeout=60) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs

    delivered_ids = Counter(r.json["message_id"] for r in receiver.requests)
    assert len(delivered_ids) == 30
    assert set(delivered_ids.values()) == {1}
    assert Message.objects.filter(role=Message.Role.ASSISTANT, delivery_state="delivered").count() == 30
    # Both took part (each skipped what the other held), or one finished first: either way,
    # the totals add up to exactly the backlog.
    summaries = [out.decode() for out, _ in outputs]
    delivered_total = sum(int(s.split("delivered ")[1].split(",")[0]) for s in summaries)
    assert delivered_total == 30, summaries


@override_settings(CHANNEL_MAX_RETRIES=0)
def test_loop_survives_a_database_outage_and_delivers_afterwards(channel, receiver, monkeypatch) -> None:
    """A pass that hits an unreachable database is logged and retried on the next pass; the
    service loop does not die."""
    from pymongo.errors import ServerSelectionTimeoutError

    from dialogues.management.commands import deliver_pending as command

    receiver.default = Reply(status=503)
    process(channel, "m-1")
    receiver.default = Reply(status=200)
    passes: list[str] = []
    real_pass = command.Command.run_pass

    def flaky_pass(*, respect_schedule: bool, limit: int, workers: int):  # type: ignore[no-untyped-def]
        passes.append("pass")
        if len(passes) == 1:
            raise ServerSelectionTimeoutError("database down")
        counts = real_pass(respect_schedule=False, limit=limit, workers=workers)
        if len(passes) >= 2:
            os.kill(os.getpid(), signal.SIGTERM)  # the loop's own stop signal
        return counts

    monkeypatch.setattr(command.Command, "run_pass", staticmethod(flaky_pass))
    previous = signal.getsignal(signal.SIGTERM)
    try:
        output = deliver_pending("--loop", "--interval", "0.1")
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, signal.default_int_handler)

    assert len(passes) == 2
    assert "delivered 1" in output
    assert Message.objects.get(role=Message.Role.ASSISTANT).delivery_state == "delivered"


@override_settings(CHANNEL_MAX_RETRIES=0)
def test_workers_wait_on_slow_channels_at_once_and_deliver_each_reply_once(bot, receiver) -> None:
    """A backlog for a slow channel: one pass with 8 workers has all 8 POSTs in flight
    together (one after the other, they would arrive over 8 x 0.5 s)."""
    receiver.default = Reply(status=503)
    channels = [ChannelFactory(chat_bot=bot, url=receiver.url) for _ in range(2)]
    for index in range(8):
        process(channels[index % 2], f"m-{index}")
    receiver.reset()
    receiver.default = Reply(status=200, delay_s=0.5)

    output = deliver_pending("--workers", "8")

    assert output.startswith("generated 0, delivered 8, failed 0")
    arrivals = [r.at for r in receiver.requests]
    assert len(arrivals) == 8
    assert max(arrivals) - min(arrivals) < 0.5, arrivals
    assert Counter(r.json["message_id"] for r in receiver.requests).most_common(1)[0][1] == 1
    assert Message.objects.filter(role=Message.Role.ASSISTANT, delivery_state="delivered").count() == 8
