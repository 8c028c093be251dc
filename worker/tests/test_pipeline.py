"""The reply pipeline through the real webhook and the real worker (in this process), against
a real local receiver playing the channel."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import timedelta

import pytest
from django.conf import settings
from django.test import override_settings
from django.utils import timezone

from channels_app.models import Channel
from channels_app.tests.factories import ChannelFactory
from chatbots.tests.factories import ChatBotFactory
from devtools.receiver import ChannelReceiver, Reply
from dialogues.models import Dialogue, Message
from dialogues.store.collections import dialogues_collection, messages_collection
from dialogues.store.recovery import orphans_wake
from dialogues.store.replies import reply_fence, reply_record
from dialogues.tests.conftest import customer_message
from worker.loop import Worker

pytestmark = pytest.mark.django_db

Drain = Callable[[], None]


def test_webhook_acknowledges_and_the_worker_delivers_once_with_an_idempotency_key(
    channel, post_webhook, receiver: ChannelReceiver, drain: Drain
) -> None:
    response = post_webhook(customer_message(channel, message_id="m-1", text="Hello"))
    assert response.status_code == 200
    body = response.json()
    assert body["reply_pending"] is True and body["replied"] is False and body["delivery"] is None
    assert receiver.requests == []  # nothing is sent before the worker runs

    drain()
    assert len(receiver.requests) == 1
    request = receiver.requests[0]
    reply = Message.objects.get(role=Message.Role.ASSISTANT)
    assert request.json == {
        "type": "message",
        "message_id": reply.message_id,
        "role": "ASSISTANT",
        "text": reply.text,
        "chat_id": str(channel.pk),
        "in_reply_to": "m-1",
    }
    assert request.headers["webhook-id"] == reply.message_id
    assert request.headers["x-chat_auth_token"] == f"Bearer {channel.settings.token}"
    assert reply.delivery_state == "delivered" and reply.delivery_attempts == 1
    assert reply.llm_backend == "mock" and reply.llm_latency_ms is not None
    assert Message.objects.get(message_id="m-1").reply_state == "replied"
    dialogue = dialogues_collection().find_one({"_id": reply.dialogue_id})
    assert "work_due_at" not in dialogue and "claim_token" not in dialogue
    assert dialogue["claim_until"] < timezone.now().replace(tzinfo=None)  # free

    drain()  # nothing is owed any more: nothing is sent again
    assert len(receiver.requests) == 1


def _due_now() -> None:
    """A message is due WORK_DUE_DELAY (5 ms) after its reservation: a claim right after the
    webhook may come too early."""
    dialogues_collection().update_many({"work_due_at": {"$exists": True}}, {"$set": {"work_due_at": timezone.now()}})


def _server_writes(collection: str) -> dict[str, int]:
    """The database server's own count of inserts and updates on a collection (`top`)."""
    from django.db import connection

    try:
        top = connection.database.client.admin.command("top")
    except Exception as exc:  # noqa: BLE001 - a managed MongoDB may refuse `top`
        pytest.skip(f"the server does not answer top: {exc}")
    ns = f"{connection.database.name}.{collection}"
    totals = top["totals"].get(ns, {})
    return {kind: int(totals.get(kind, {}).get("count", 0)) for kind in ("insert", "update")}


def test_a_healthy_reply_is_stored_once_with_its_outcome(channel, post_webhook, receiver, drain) -> None:
    post_webhook(customer_message(channel, message_id="m-1"))
    before = _server_writes("dialogues_message")
    drain()
    after = _server_writes("dialogues_message")
    # One insert (the reply, already delivered) and one update (the customer message marked
    # replied at the end of the pass): no pending reply written first and updated after.
    assert after["insert"] - before["insert"] == 1
    assert after["update"] - before["update"] == 1
    reply = Message.objects.get(role=Message.Role.ASSISTANT)
    assert reply.delivery_state == "delivered" and reply.delivery_attempts == 1 and reply.delivered_at is not None
    assert len(receiver.requests) == 1


def test_a_crash_between_the_post_and_its_record_repeats_the_same_idempotency_key(
    claim_next, channel, post_webhook, receiver, drain, monkeypatch
) -> None:
    import worker.delivery
    import worker.pipeline

    post_webhook(customer_message(channel, message_id="m-1"))
    _due_now()

    def die(**kwargs):
        raise SystemExit("the worker died after its POST")

    with monkeypatch.context() as patch:
        patch.setattr(worker.delivery, "reply_store", die)
        claim = claim_next()
        assert claim is not None
        with pytest.raises(SystemExit):
            worker.pipeline.dialogue_process(claim, slots=worker.pipeline.Slots())
    assert len(receiver.requests) == 1
    assert not Message.objects.filter(role=Message.Role.ASSISTANT).exists()
    assert Message.objects.get(message_id="m-1").reply_state == "awaiting"

    # Its lease runs out; the next holder generates the reply again and sends it under the same id.
    dialogues_collection().update_one({"_id": claim.dialogue_id}, {"$set": {"claim_until": timezone.now()}})
    drain()
    first, second = receiver.requests
    assert second.headers["webhook-id"] == first.headers["webhook-id"]
    assert second.json["message_id"] == first.json["message_id"]
    reply = Message.objects.get(role=Message.Role.ASSISTANT)
    assert reply.message_id == first.json["message_id"] and reply.delivery_state == "delivered"
    assert Message.objects.get(message_id="m-1").reply_state == "replied"


def test_a_pass_that_fails_after_the_post_leaves_the_message_owed(
    claim_next, channel, post_webhook, receiver, drain, worker, monkeypatch
) -> None:
    post_webhook(customer_message(channel, message_id="m-1"))
    _due_now()
    with monkeypatch.context() as patch:
        patch.setattr("worker.delivery.reply_store", lambda **kwargs: 1 / 0)
        claim = claim_next()
        assert claim is not None
        worker.work_one(claim)  # logs the error and gives the dialogue back for a later try
    user = Message.objects.get(message_id="m-1")
    dialogue = dialogues_collection().find_one({"_id": claim.dialogue_id})
    # The customer message's position is not counted as settled: the next pass answers it
    # (not only the recovery sweep, 10 s later).
    assert dialogue.get("done_seq", 0) < user.seq and "claim_token" not in dialogue
    assert user.reply_state == "awaiting" and len(receiver.requests) == 1

    _due_now()
    drain()
    first, second = receiver.requests
    assert second.headers["webhook-id"] == first.headers["webhook-id"]
    assert Message.objects.get(role=Message.Role.ASSISTANT).delivery_state == "delivered"


def test_duplicate_webhook_reports_the_known_state(channel, post_webhook, drain: Drain) -> None:
    post_webhook(customer_message(channel, message_id="m-1"))
    pending = post_webhook(customer_message(channel, message_id="m-1")).json()
    assert pending["duplicate"] is True and pending["reply_pending"] is True
    drain()
    done = post_webhook(customer_message(channel, message_id="m-1")).json()
    assert done["duplicate"] is True and done["replied"] is True and done["delivery"] == "delivered"
    assert Message.objects.filter(message_id="m-1").count() == 1
    assert Message.objects.filter(role=Message.Role.ASSISTANT).count() == 1


def test_replies_reach_the_channel_in_the_order_of_the_messages(channel, post_webhook, receiver, drain) -> None:
    for number in range(12):
        post_webhook(customer_message(channel, message_id=f"m-{number}", text=f"question {number}"))
    drain()
    assert [request.json["in_reply_to"] for request in receiver.requests] == [f"m-{n}" for n in range(12)]
    # Each reply saw the replies before it: the context grows by two per message.
    first, last = receiver.requests[0].json["text"], receiver.requests[-1].json["text"]
    assert first.startswith("Echo (1 in context") and last.startswith("Echo (20 in context")  # LLM_CONTEXT_MESSAGES


def test_a_failed_reply_holds_back_later_replies_of_its_chat_only(channel, post_webhook, receiver, drain) -> None:
    other = ChannelFactory(chat_bot=channel.chat_bot, url=receiver.url.replace("/hook", "/other"))
    receiver.default = Reply(status=503)
    post_webhook(customer_message(channel, message_id="a-1"))
    post_webhook(customer_message(channel, message_id="a-2"))
    post_webhook(customer_message(other, message_id="b-1"))
    drain()
    # a-1 failed once and waits for its retry; a-2 waits behind it; b-1 went through.
    paths = [(r.path, r.json["in_reply_to"]) for r in receiver.requests]
    assert ("/other", "b-1") in paths
    assert [p for p in paths if p[0] == "/hook"] == [("/hook", "a-1")]
    failed = Message.objects.get(in_reply_to="a-1")
    assert failed.delivery_state == "failed" and failed.next_attempt_at is not None
    receiver.default = Reply(status=200)

    Message.objects.filter(pk=failed.pk).update(next_attempt_at=timezone.now() - timedelta(seconds=1))
    dialogues_collection().update_one({"_id": failed.dialogue_id}, {"$set": {"work_due_at": timezone.now()}})
    drain()
    hook = [r for r in receiver.requests if r.path == "/hook"]
    assert [r.json["in_reply_to"] for r in hook] == ["a-1", "a-1", "a-2"]
    assert hook[0].headers["webhook-id"] == hook[1].headers["webhook-id"] == failed.message_id


@override_settings(DELIVERY_MAX_ATTEMPTS=2, DELIVERY_RETRY_BASE_S=0.01, DELIVERY_RETRY_MAX_S=0.01)
def test_a_dead_reply_does_not_block_the_next_one(channel, post_webhook, receiver, drain) -> None:
    receiver.then(Reply(status=500), Reply(status=500))
    post_webhook(customer_message(channel, message_id="m-1"))
    post_webhook(customer_message(channel, message_id="m-2"))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not Message.objects.filter(in_reply_to="m-2", delivery_state="delivered"):
        drain()
        time.sleep(0.02)
    assert Message.objects.get(in_reply_to="m-1").delivery_state == "dead"
    assert Message.objects.get(in_reply_to="m-2").delivery_state == "delivered"
    assert [r.json["in_reply_to"] for r in receiver.requests] == ["m-1", "m-1", "m-2"]


def test_inactive_channel_parks_its_replies_without_blocking_others_even_past_many(
    post_webhook, receiver, drain
) -> None:
    bot = ChatBotFactory()
    parked_channels = [ChannelFactory(chat_bot=bot, url=receiver.url) for _ in range(30)]
    healthy = ChannelFactory(chat_bot=bot, url=receiver.url.replace("/hook", "/healthy"))
    for channel in parked_channels:
        post_webhook(customer_message(channel, message_id=f"p-{channel.pk}"), secret=bot.plain_secret)
        Channel.objects.filter(pk=channel.pk).update(is_active=False)
    post_webhook(customer_message(healthy, message_id="h-1"), secret=bot.plain_secret)
    drain()
    assert [r.path for r in receiver.requests] == ["/healthy"]
    parked = list(dialogues_collection().find({"parked": {"$exists": True}}))
    assert len(parked) == 30 and {d["parked"] for d in parked} == {"The channel is inactive"}
    assert dialogues_collection().count_documents({"work_due_at": {"$exists": True}}) == 0

    Channel.objects.filter(pk=parked_channels[0].pk).update(is_active=True)
    drain()  # the worker's housekeeping resumes the reactivated channel's dialogue
    assert sorted(r.path for r in receiver.requests) == ["/healthy", "/hook"]
    assert dialogues_collection().count_documents({"parked": {"$exists": True}}) == 29


def test_a_reply_parked_after_failing_resumes_when_its_channel_is_back(channel, post_webhook, receiver, drain) -> None:
    receiver.then(Reply(status=503))
    post_webhook(customer_message(channel, message_id="m-1"))
    drain()
    Channel.objects.filter(pk=channel.pk).update(is_active=False)
    reply = Message.objects.get(role=Message.Role.ASSISTANT)
    Message.objects.filter(pk=reply.pk).update(next_attempt_at=None)
    dialogues_collection().update_one({"_id": reply.dialogue_id}, {"$set": {"work_due_at": timezone.now()}})
    drain()
    reply.refresh_from_db()
    assert reply.delivery_state == "parked" and reply.last_error == "The channel is inactive"
    Channel.objects.filter(pk=channel.pk).update(is_active=True)
    drain()
    reply.refresh_from_db()
    assert reply.delivery_state == "delivered" and len(receiver.requests) == 2


def test_a_stale_holders_outcome_is_refused(claim_next, channel, post_webhook, receiver, drain) -> None:
    receiver.then(Reply(status=503))
    post_webhook(customer_message(channel, message_id="m-1"))
    drain()
    reply = Message.objects.get(role=Message.Role.ASSISTANT)
    stale_token = reply.claim_token
    # The stale holder's lease expired; a new holder claims the dialogue and fences the reply.
    dialogues_collection().update_one({"_id": reply.dialogue_id}, {"$set": {"work_due_at": timezone.now()}})
    Message.objects.filter(pk=reply.pk).update(next_attempt_at=None)
    claim = claim_next()
    assert claim is not None and claim.token != stale_token
    assert reply_fence(reply={"_id": reply.pk}, token=claim.token)
    assert reply_record(
        reply_id=reply.pk, chat_bot_id=reply.chat_bot_id, token=claim.token, values={"delivery_state": "delivered"}
    )
    # The stale holder's late outcome would have said "failed": it is refused.
    assert not reply_record(
        reply_id=reply.pk, chat_bot_id=reply.chat_bot_id, token=stale_token, values={"delivery_state": "failed"}
    )
    reply.refresh_from_db()
    assert reply.delivery_state == "delivered" and reply.delivery_attempts == 2


def test_a_claim_is_exclusive_until_it_expires(claim_next, channel, post_webhook) -> None:
    post_webhook(customer_message(channel, message_id="m-1"))
    _due_now()
    first = claim_next()
    assert first is not None
    assert claim_next() is None
    dialogues_collection().update_one({"_id": first.dialogue_id}, {"$set": {"claim_until": timezone.now()}})
    second = claim_next()
    assert second is not None and second.token != first.token


@override_settings(LLM_MAX_ATTEMPTS=2)
def test_llm_errors_are_retried_then_the_fallback_text_is_sent(channel, post_webhook, receiver, drain) -> None:
    from llm.tests.backends import failing_calls

    channel.chat_bot.fallback_text = "Sorry, we will get back to you."
    channel.chat_bot.save()
    with override_settings(LLM_BACKEND="llm.tests.backends.always_failing"):
        post_webhook(customer_message(channel, message_id="m-1"))
        drain()
        user = Message.objects.get(message_id="m-1")
        assert user.reply_state == "awaiting" and user.llm_attempts == 1 and user.next_attempt_at
        Message.objects.filter(pk=user.pk).update(next_attempt_at=timezone.now())
        dialogues_collection().update_one({"_id": user.dialogue_id}, {"$set": {"work_due_at": timezone.now()}})
        drain()
    assert failing_calls() >= 2
    reply = Message.objects.get(role=Message.Role.ASSISTANT)
    assert reply.text == "Sorry, we will get back to you." and reply.llm_backend == "fallback"
    assert [r.json["text"] for r in receiver.requests] == ["Sorry, we will get back to you."]


@override_settings(LLM_MAX_ATTEMPTS=1)
def test_without_fallback_the_message_gets_no_reply_and_the_next_one_is_answered(
    channel, post_webhook, receiver, drain
) -> None:
    with override_settings(LLM_BACKEND="llm.tests.backends.always_failing"):
        post_webhook(customer_message(channel, message_id="m-1"))
        drain()
    assert Message.objects.get(message_id="m-1").reply_state == "failed"
    post_webhook(customer_message(channel, message_id="m-2"))
    drain()
    assert [r.json["in_reply_to"] for r in receiver.requests] == ["m-2"]


@override_settings(WORKER_BREAKER_THRESHOLD=3, WORKER_BREAKER_COOLDOWN_S=60, DELIVERY_RETRY_BASE_S=0.01)
def test_breaker_opens_after_failures_in_a_row_and_a_probe_closes_it(bot, post_webhook, receiver, drain) -> None:
    channel = ChannelFactory(chat_bot=bot, url=receiver.url)
    receiver.default = Reply(status=503)
    for number in range(5):
        post_webhook(customer_message(channel, message_id=f"m-{number}", chat_id=f"chat-{number}",
                                      channel_id=str(channel.pk)))  # fmt: skip
    for _ in range(10):
        Message.objects.filter(role="ASSISTANT").update(next_attempt_at=None)
        dialogues_collection().update_many({"parked": {"$exists": False}}, {"$set": {"work_due_at": timezone.now()}})
        drain()
    channel.refresh_from_db()
    # Attempts in flight (or retried) before the third failure was recorded count too; once
    # open, nothing more is sent.
    assert 3 <= channel.consecutive_failures <= 10 and channel.breaker_open_until > timezone.now()
    assert len(receiver.requests) == channel.consecutive_failures
    for _ in range(3):
        Message.objects.filter(role="ASSISTANT").update(next_attempt_at=None)
        dialogues_collection().update_many({}, {"$set": {"work_due_at": timezone.now()}})
        drain()
    assert len(receiver.requests) == channel.consecutive_failures  # nothing while it is open

    receiver.default = Reply(status=200)
    Channel.objects.filter(pk=channel.pk).update(breaker_open_until=timezone.now() - timedelta(seconds=1))
    Message.objects.filter(role="ASSISTANT").update(next_attempt_at=None)
    dialogues_collection().update_many({}, {"$set": {"work_due_at": timezone.now()}})
    deadline = time.monotonic() + 10
    while (
        time.monotonic() < deadline and Message.objects.filter(role="ASSISTANT", delivery_state="delivered").count() < 5
    ):
        drain()  # the probe goes first; the others follow within a second
        time.sleep(0.05)
    channel.refresh_from_db()
    assert channel.consecutive_failures == 0 and channel.breaker_open_until is None
    states = list(
        Message.objects.filter(role="ASSISTANT").values_list("delivery_state", "next_attempt_at", "last_error")
    )
    assert [state[0] for state in states] == ["delivered"] * 5, (
        states,
        list(dialogues_collection().find({}, {"work_due_at": 1, "claim_until": 1, "done_seq": 1, "last_seq": 1})),
    )


def test_a_probe_that_closes_the_breaker_lets_every_waiting_dialogue_go_at_once(
    bot, post_webhook, receiver, drain
) -> None:
    """The bug (the test above failed under load): a dialogue that read the breaker while
    another's probe was in flight waited for the probe's whole hold (the attempt's timeout and
    more), after the probe had closed the breaker."""
    channel = ChannelFactory(chat_bot=bot, url=receiver.url)
    receiver.default = Reply(status=503)
    for number in range(2):
        post_webhook(customer_message(channel, message_id=f"p-{number}", chat_id=f"p-{number}",
                                      channel_id=str(channel.pk)))  # fmt: skip
    drain()
    assert Message.objects.filter(role="ASSISTANT", delivery_state="failed").count() == 2
    receiver.default = Reply(status=200)
    now = timezone.now()
    Channel.objects.filter(pk=channel.pk).update(consecutive_failures=5, breaker_open_until=now - timedelta(seconds=1))
    Message.objects.filter(role="ASSISTANT").update(next_attempt_at=None)
    probe, waiting = (Dialogue.objects.get(chat_id=f"p-{number}").pk for number in range(2))
    dialogues_collection().update_one({"_id": probe}, {"$set": {"work_due_at": now}})
    # It saw the probe in flight: due again when the probe's hold ends.
    dialogues_collection().update_one({"_id": waiting}, {"$set": {"work_due_at": now + timedelta(seconds=60)}})
    drain()
    assert Message.objects.filter(role="ASSISTANT", delivery_state="delivered").count() == 2


def test_a_slow_channel_takes_no_more_than_its_share_of_the_worker(bot, post_webhook) -> None:
    """The slow channel holds every request until the test lets go (no timing to guess): with
    its 2 slots taken, the fast channel's replies all arrive meanwhile. Without the bulkhead,
    the slow channel's 8 dialogues would hold all 8 threads and the fast ones would wait."""
    slow_receiver = ChannelReceiver().start()
    fast_receiver = ChannelReceiver().start()
    hold = threading.Event()
    try:
        slow_receiver.default = Reply(release=hold)
        slow = ChannelFactory(chat_bot=bot, url=slow_receiver.url)
        fast = ChannelFactory(chat_bot=bot, url=fast_receiver.url)
        for number in range(8):
            post_webhook(customer_message(slow, message_id=f"s-{number}", chat_id=f"s-{number}",
                                          channel_id=str(slow.pk)))  # fmt: skip
        worker = Worker(threads=8, poll_ms=5)
        with override_settings(WORKER_CHANNEL_CONCURRENCY=2, CHANNEL_ATTEMPT_TIMEOUT_S=60):
            worker.slots.channel_limit = 2
            runner = threading.Thread(target=worker.run, daemon=True)
            runner.start()
            try:
                slow_receiver.wait_for(2, timeout=20)
                for number in range(8):
                    post_webhook(customer_message(fast, message_id=f"f-{number}", chat_id=f"f-{number}",
                                                  channel_id=str(fast.pk)))  # fmt: skip
                fast_receiver.wait_for(8, timeout=20)
                # Every fast reply arrived while the slow channel still held its first two.
                assert len(fast_receiver.requests) == 8
                assert len(slow_receiver.requests) == 2
            finally:
                hold.set()
                worker.stop(wait_s=5)
    finally:
        hold.set()
        slow_receiver.stop()
        fast_receiver.stop()


def test_an_orphaned_owed_message_is_found_by_the_recovery_sweep(channel, post_webhook, receiver, drain) -> None:
    post_webhook(customer_message(channel, message_id="m-1"))
    dialogue = Dialogue.objects.get()
    # As if the dialogue had been released by a worker that raced the message's insert.
    dialogues_collection().update_one({"_id": dialogue.pk}, {"$unset": {"work_due_at": ""}, "$set": {"done_seq": 5}})
    drain()
    assert receiver.requests == []
    assert orphans_wake(older_than=timedelta(0)) == 1
    drain()
    assert [r.json["in_reply_to"] for r in receiver.requests] == ["m-1"]


def test_a_reserved_position_still_being_written_is_waited_for(channel, post_webhook, receiver, drain) -> None:
    post_webhook(customer_message(channel, message_id="m-1"))
    drain()
    dialogue = Dialogue.objects.get()
    # Another request reserved positions 3-4 and has not stored its message yet; m-3 (5-6)
    # is stored first.
    dialogues_collection().update_one({"_id": dialogue.pk}, {"$inc": {"last_seq": 2}})
    post_webhook(customer_message(channel, message_id="m-3"))
    drain()
    assert [r.json["in_reply_to"] for r in receiver.requests] == ["m-1"]  # m-3 waits for position 3
    doc = Message.objects.get(message_id="m-3")
    late = messages_collection().find_one({"_id": doc.pk})
    late.update(_id=None, message_id="m-2", seq=3)
    del late["_id"]
    messages_collection().insert_one(late)
    dialogues_collection().update_one({"_id": dialogue.pk}, {"$set": {"work_due_at": timezone.now()}})
    drain()
    assert [r.json["in_reply_to"] for r in receiver.requests] == ["m-1", "m-2", "m-3"]


def test_webhook_can_wait_for_the_outcome(channel, post_webhook, receiver) -> None:
    worker = Worker(threads=4, poll_ms=5)
    runner = threading.Thread(target=worker.run, daemon=True)
    runner.start()
    try:
        with override_settings(WEBHOOK_REPLY_WAIT_MS=3000):
            started = time.monotonic()
            body = post_webhook(customer_message(channel, message_id="m-1")).json()
            elapsed = time.monotonic() - started
        assert body["replied"] is True and body["delivery"] == "delivered" and body["reply_pending"] is False
        assert elapsed < 2.0
        receiver.default = Reply(delay_s=2.0)
        with override_settings(WEBHOOK_REPLY_WAIT_MS=300):
            started = time.monotonic()
            body = post_webhook(customer_message(channel, message_id="m-2")).json()
            elapsed = time.monotonic() - started
        assert 0.3 <= elapsed < 1.0 and body["delivery"] in ("queued", None)
    finally:
        worker.stop(wait_s=5)


def test_redeliver_from_the_admin_hands_work_to_the_worker(channel, post_webhook, receiver, drain) -> None:
    from dialogues.store.recovery import reply_redeliver_request

    with override_settings(DELIVERY_MAX_ATTEMPTS=1):
        receiver.then(Reply(status=500))
        post_webhook(customer_message(channel, message_id="m-1"))
        drain()
        reply = Message.objects.get(role=Message.Role.ASSISTANT)
        assert reply.delivery_state == "dead"
        reply_redeliver_request(message=reply)
        assert len(receiver.requests) == 1  # nothing was sent by the request itself
        drain()
    reply.refresh_from_db()
    assert reply.delivery_state == "delivered" and reply.delivery_revivals == 1 and len(receiver.requests) == 2


def test_test_message_is_sent_by_the_worker(channel, receiver, drain) -> None:
    Channel.objects.filter(pk=channel.pk)  # the admin's action, through its service
    from django.db import connection

    connection.get_collection("channels_app_channel").update_one(
        {"_id": channel.pk}, {"$set": {"test_requested_at": timezone.now()}}
    )
    drain()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not Channel.objects.get(pk=channel.pk).last_test_at:
        time.sleep(0.02)
    channel.refresh_from_db()
    assert channel.last_test_ok is True and channel.last_test_result.startswith("HTTP 200")
    assert receiver.requests[0].json["test"] is True


def test_settings_used_by_the_worker_are_sane() -> None:
    assert settings.WORKER_THREADS >= settings.WORKER_CHANNEL_CONCURRENCY


def test_a_backlog_longer_than_one_read_is_worked_through_in_one_go(channel, post_webhook, receiver, drain) -> None:
    with override_settings(LLM_CONTEXT_MESSAGES=2):
        for number in range(60):
            post_webhook(customer_message(channel, message_id=f"m-{number}"))
        drain()
    assert [r.json["in_reply_to"] for r in receiver.requests] == [f"m-{n}" for n in range(60)]


def test_a_tenant_at_its_limit_is_set_aside_for_longer_the_longer_it_stays_there(bot, post_webhook) -> None:
    from worker import loop

    channel = ChannelFactory(chat_bot=bot, url="http://127.0.0.1:9/hook")
    other = ChannelFactory(chat_bot=bot, url="http://127.0.0.1:9/hook")
    for number, target in enumerate((channel, channel, other)):
        post_webhook(customer_message(target, message_id=f"d-{number}", chat_id=f"d-{number}",
                                      channel_id=str(target.pk)))  # fmt: skip

    def due_in(of: Channel) -> list[float]:
        now = timezone.now()
        return [(doc["work_due_at"].replace(tzinfo=now.tzinfo) - now).total_seconds()
                for doc in dialogues_collection().find({"channel_id": of.pk})]  # fmt: skip

    worker = Worker(threads=2)
    worker._defer([channel.pk], [])
    assert all(loop.DEFER_S - 0.5 < seconds <= loop.DEFER_S + 0.1 for seconds in due_in(channel))
    assert all(seconds <= 0 for seconds in due_in(other))  # another tenant is left alone
    # Still at its limit 5 s later: its backlog is moved once, for about as long again.
    worker._saturated_since[channel.pk] -= 5
    worker._deferred[channel.pk] = 0.0
    worker._defer([channel.pk], [])
    assert all(4.5 < seconds <= 5.1 for seconds in due_in(channel)), due_in(channel)
    # Free again, then at its limit again: back to the short wait.
    worker._defer([], [])
    assert channel.pk not in worker._saturated_since
    worker._saturated_since[channel.pk] = time.monotonic() - 60
    worker._deferred[channel.pk] = 0.0
    worker._defer([channel.pk], [bot.pk])
    assert all(loop.DEFER_MAX_S - 0.5 < seconds <= loop.DEFER_MAX_S + 0.1 for seconds in due_in(channel))


def test_a_pass_whose_end_was_lost_never_posts_a_stored_reply_again(
    channel, post_webhook, receiver, drain, monkeypatch
) -> None:
    """The database hung after a pass had delivered and stored its replies but before its end
    (the messages' "replied" marks and the dialogue's release) was written: the next pass (or
    the recovery sweep) walks those messages again. A message whose reply lies beyond one
    read of the dialogue is looked up by its key, never answered and POSTed a second time."""
    from dialogues.models import Message as StoredMessage

    count = 3 * (settings.LLM_CONTEXT_MESSAGES + 20)
    for number in range(count):
        post_webhook(customer_message(channel, message_id=f"m-{number}", text=f"question {number}"))
    _due_now()
    drain()
    assert len(receiver.requests) == count

    # What the lost end would have written is missing: every customer message still awaiting,
    # the dialogue's position back at the start, and it is due again (as the sweep leaves it).
    messages_collection().update_many({"role": "USER"}, {"$set": {"reply_state": "awaiting"}})
    dialogues_collection().update_many({}, {"$set": {"done_seq": 0, "work_due_at": timezone.now()}})
    drain()
    repeated = [r.json["in_reply_to"] for r in receiver.requests[count:]]
    assert repeated == []
    assert StoredMessage.objects.filter(role="USER", reply_state="replied").count() == count
