"""The reply pipeline through real processes: gunicorn and `manage.py run_worker` exactly as
`make run` starts them, against real local receivers."""

from __future__ import annotations

import statistics
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from django.conf import settings

from channels_app.tests.factories import ChannelFactory
from chatbots.tests.factories import ChatBotFactory
from devtools.embedded_mongo import free_port
from devtools.receiver import ChannelReceiver, Reply
from dialogues.models import Message
from tests.fault.conftest import SEED_HEADER, WEBHOOK, receiver_on_port
from tests.support.live_server import LiveServer

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def stack(request) -> Iterator[LiveServer]:  # type: ignore[no-untyped-def]
    """gunicorn and the worker on the test database; settings from the test's `stack_env`."""
    env = {"DELIVERY_RETRY_BASE_S": "0.2", "DELIVERY_RETRY_MAX_S": "0.5", "CHANNEL_ATTEMPT_TIMEOUT_S": "2"}
    marker = request.node.get_closest_marker("stack_env")
    if marker:
        env.update(marker.args[0])
    server = LiveServer(db_name=settings.DATABASES["default"]["NAME"], env=env, worker=True).start()
    yield server
    server.stop()


def send(server: LiveServer, secret: str, body: dict, session: requests.Session | None = None) -> tuple[int, float]:
    started = time.monotonic()
    response = (session or requests).post(
        server.url + WEBHOOK, json=body, headers={SEED_HEADER: f"Bearer {secret}"}, timeout=30
    )
    return response.status_code, time.monotonic() - started


def message(channel, number: int, *, prefix: str = "m", chat: str | None = None) -> dict:  # type: ignore[no-untyped-def]
    body = {"message_id": f"{prefix}-{number}", "chat_id": str(channel.pk), "text": f"question {number}",
            "message_sender": "customer"}  # fmt: skip
    if chat is not None:
        body.update(chat_id=chat, channel_id=str(channel.pk))
    return body


# The slow-neighbour test's load on bot A: a steady rate well within what this stack serves on
# two cores (about 60 replies/s with 16 concurrent clients, `make bench`), for ten seconds.
A_RATE = 15.0
A_COUNT = 150


def wait_until(predicate, timeout: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def test_a_channel_down_then_back_gets_its_reply_from_the_worker_alone_once(stack: LiveServer) -> None:
    port = free_port()
    channel = ChannelFactory(url=f"http://127.0.0.1:{port}/hook")
    status, _ = send(stack, channel.chat_bot.plain_secret, message(channel, 1))
    assert status == 200
    assert wait_until(lambda: Message.objects.filter(role="ASSISTANT", delivery_attempts__gte=2).exists(), 15)
    receiver = receiver_on_port(port)
    try:
        assert wait_until(lambda: len(receiver.requests) >= 1, 15)
        time.sleep(1.0)  # nothing more arrives
        assert len(receiver.requests) == 1
        reply = Message.objects.get(role="ASSISTANT")
        assert reply.delivery_state == "delivered"
        assert receiver.requests[0].headers["webhook-id"] == reply.message_id
    finally:
        receiver.stop()


@pytest.mark.stack_env({"LLM_MOCK_DELAY_MS": "2000", "WORKER_BOT_LLM_CONCURRENCY": "32"})
def test_a_slow_llm_never_holds_the_webhook(stack: LiveServer, receiver: ChannelReceiver) -> None:
    channel = ChannelFactory(url=receiver.url)
    secret = channel.chat_bot.plain_secret
    with requests.Session() as session:
        results = [send(stack, secret, message(channel, n, chat=f"chat-{n}"), session) for n in range(40)]
    assert {status for status, _ in results} == {200}
    latencies = sorted(elapsed for _, elapsed in results)
    p99 = latencies[int(len(latencies) * 0.99) - 1]
    # Held by the LLM, a request would take its 2 s; a quarter of that tells the two apart even
    # on a busy machine (its speed is the benchmark's to measure).
    assert p99 <= 0.5, f"webhook p99 {p99 * 1000:.0f} ms with a 2 s LLM"
    assert wait_until(lambda: len(receiver.requests) >= 40, 30)
    assert sorted(r.json["in_reply_to"] for r in receiver.requests) == sorted(f"m-{n}" for n in range(40))


@pytest.mark.stack_env({"WORKER_THREADS": "16", "LLM_TIMEOUT_S": "3"})
def test_kill_9_of_the_worker_mid_load_loses_nothing_and_repeats_carry_the_same_key(
    stack: LiveServer, receiver: ChannelReceiver
) -> None:
    receiver.default = Reply(delay_s=0.05)
    bot = ChatBotFactory()
    channel = ChannelFactory(chat_bot=bot, url=receiver.url)
    total = 500

    def post(number: int) -> int:
        return send(stack, bot.plain_secret, message(channel, number, chat=f"chat-{number % 50}"))[0]

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(post, range(total)))
    assert set(statuses) == {200}
    assert wait_until(lambda: len(receiver.requests) >= 100, 30)
    assert stack.worker is not None
    stack.worker.kill()
    killed_at = len(receiver.requests)
    stack.worker.start()
    assert wait_until(lambda: len({r.headers["webhook-id"] for r in receiver.requests}) >= total, 90)
    # Each reply is recorded a moment after the receiver got it.
    assert wait_until(lambda: Message.objects.filter(role="ASSISTANT", delivery_state="delivered").count() >= total, 15)
    by_key = Counter(r.headers["webhook-id"] for r in receiver.requests)
    replies = {m.message_id: m for m in Message.objects.filter(role="ASSISTANT")}
    assert len(replies) == total and set(by_key) == set(replies)
    assert all(m.delivery_state == "delivered" for m in replies.values())
    repeats = {key: count for key, count in by_key.items() if count > 1}
    # Repeats only for what was in flight at the kill: at most one per worker thread.
    assert len(repeats) <= 16 and all(count == 2 for count in repeats.values()), repeats
    for request in receiver.requests:
        assert request.json["message_id"] == request.headers["webhook-id"]
    assert killed_at < total


@pytest.mark.stack_env({"CHANNEL_ATTEMPT_TIMEOUT_S": "5", "WORKER_CHANNEL_CONCURRENCY": "4"})
def test_a_hanging_channel_of_one_bot_leaves_another_bots_throughput_alone(stack: LiveServer) -> None:
    """Bot A is offered a steady A_RATE messages/s (open loop, like real channels: they do not
    wait for one message's ack to send the next), without B, with B's channel hanging (4
    attempts held at a time, the channel's share), and without B again. A's throughput (its
    messages over the time from the first send to the last reply received) and its webhook p99
    must hold with B hanging.

    Why open loop at a fixed rate: a sequential client measures the machine, not isolation.
    On a 2-core CI machine two identical sequential runs without B differed by 19 % (27.9 and
    22.7 replies/s), since every process shares the two cores and the single-threaded embedded
    database. At a rate within the machine's capacity, A keeps its rate unless B takes A's share
    of the worker, which is the failure this guards against (a hanging neighbour used to take
    A from 66 to 4 messages/s)."""
    fast = ChannelReceiver().start()
    hanging = ChannelReceiver().start()
    hanging.default = Reply(delay_s=30)
    stop_b = threading.Event()
    try:
        bot_a, bot_b = ChatBotFactory(), ChatBotFactory()
        channel_a = ChannelFactory(chat_bot=bot_a, url=fast.url)
        channel_b = ChannelFactory(chat_bot=bot_b, url=hanging.url)

        def run_a(prefix: str, count: int = A_COUNT) -> tuple[float, list[float]]:
            before = len(fast.requests)
            started = time.monotonic()

            def post(n: int) -> float:
                # Sent at its time in the schedule, whatever happened to the ones before it.
                time.sleep(max(0.0, started + n / A_RATE - time.monotonic()))
                body = message(channel_a, n, prefix=prefix, chat=f"{prefix}-{n % 20}")
                status, elapsed = send(stack, bot_a.plain_secret, body)
                assert status == 200
                return elapsed

            with ThreadPoolExecutor(8) as pool:
                latencies = list(pool.map(post, range(count)))
            assert wait_until(lambda: len(fast.requests) >= before + count, 30)
            return count / (max(r.at for r in fast.requests[before:]) - started), latencies

        def traffic_b() -> None:
            with requests.Session() as session:
                number = 0
                while not stop_b.is_set():
                    send(stack, bot_b.plain_secret, message(channel_b, number, prefix="b", chat=f"b-{number}"), session)
                    number += 1
                    # One a second keeps the channel's 4 slots taken (each attempt is held 5 s)
                    # and its backlog growing.
                    time.sleep(1.0)

        before, before_latencies = run_a("before")
        b_thread = threading.Thread(target=traffic_b, daemon=True)
        b_thread.start()
        assert wait_until(lambda: len(hanging.requests) >= 4, 15)
        loaded, loaded_latencies = run_a("load")
        stop_b.set()
        b_thread.join(10)
        after, after_latencies = run_a("after")

        baseline = min(before, after)
        p99 = lambda values: sorted(values)[int(len(values) * 0.99) - 1]  # noqa: E731
        report = (
            f"A offered {A_RATE}/s: {loaded:.1f} replies/s with B hanging; without: {before:.1f} before, "
            f"{after:.1f} after"
        )
        assert loaded >= 0.9 * baseline, report
        baseline_p99 = max(p99(before_latencies), p99(after_latencies))
        assert p99(loaded_latencies) <= max(2 * baseline_p99, 0.05), (p99(loaded_latencies), baseline_p99)
        # The hanging channel never had more than its share (4) in flight: each attempt is
        # held 5 s, so no 4.5 s window saw more than 4 arrive.
        arrivals = sorted(request.at for request in hanging.requests)
        assert arrivals and max(sum(1 for t in arrivals if a <= t < a + 4.5) for a in arrivals) <= 4
        assert statistics.mean(loaded_latencies) < 0.1
    finally:
        stop_b.set()
        fast.stop()
        hanging.stop()
