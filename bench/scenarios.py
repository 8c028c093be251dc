"""The two scenarios of issue 9:

- slow neighbour: bot A under load, measured alone and then while bot B's channels hang (the
  receiver answers B's posts only after 30 s): A's throughput and webhook latency with and
  without B. B's conversations are many (`channel_id` + many `chat_id`s on two channels), so
  that without the worker's bulkheads they could take every worker thread.
- slow LLM: the worker restarted with LLM_MOCK_DELAY_MS=2000: the webhook's latency, and how
  long until every reply arrived.
"""

from __future__ import annotations

import asyncio
import math
import uuid
from typing import Any

from bson import ObjectId
from pymongo.database import Database

from bench.dbstats import DbCounters
from bench.stack import Stack
from bench.stats import summarize
from bench.workload import LoadRun, Sent, drive_at_rate

HANG_PATH = "/hook/hang/neighbour-b"


def slow_neighbour(
    stack: Stack,
    counters: DbCounters,
    db: Database,
    *,
    messages: int,
    channels: int,
    concurrency: int,
    b_channels: int = 2,
    b_chats_per_channel: int = 16,
    b_rate: float = 8.0,
) -> dict[str, Any]:
    alone = LoadRun(stack, counters, channels=channels, concurrency=concurrency, name="neighbour-a-alone")
    alone.segment(messages)
    b_bot, b_secret = stack.create_bot("bench neighbour B (hangs)")
    b_channel_ids = [stack.create_channel(bot_id=b_bot, name=f"neighbour B {i}", path=HANG_PATH)
                     for i in range(b_channels)]  # fmt: skip
    chats = [(channel, f"b-chat-{j}") for channel in b_channel_ids for j in range(b_chats_per_channel)]

    def b_body(i: int) -> dict[str, Any]:
        channel, chat = chats[i % len(chats)]
        return {"message_id": str(uuid.uuid4()), "chat_id": chat, "channel_id": channel,
                "text": f"B's customer, message {i}", "message_sender": "customer"}  # fmt: skip

    async def b_traffic(stop: asyncio.Event) -> Sent:
        return await drive_at_rate(url=stack.app_url, secret=b_secret, make_body=b_body, rate=b_rate, stop=stop)

    with_b = LoadRun(stack, counters, channels=channels, concurrency=concurrency, name="neighbour-a-with-b")
    b_sent: Sent = with_b.segment(messages, alongside=b_traffic)
    b_stats = stack.receiver_stats(HANG_PATH)
    bot = ObjectId(b_bot)
    b_replies = db.dialogues_message.count_documents({"chat_bot_id": bot, "role": "ASSISTANT"})
    b_delivered = db.dialogues_message.count_documents({"chat_bot_id": bot, "role": "ASSISTANT",
                                                        "delivery_state": "delivered"})  # fmt: skip
    # B stops here: its channels are deactivated, so its dialogues park instead of retrying
    # through the later phases (attempts in flight end at CHANNEL_ATTEMPT_TIMEOUT_S).
    for channel in b_channel_ids:
        stack.set_channel_active(channel, False)
    return {
        "alone": alone.result(db),
        "with_b": with_b.result(db),
        "b": {
            "channels": b_channels,
            "conversations": len(chats),
            "rate_msg_s": b_rate,
            "sent": len(b_sent.acks) + b_sent.non_2xx,
            "non_2xx": b_sent.non_2xx,
            "webhook_latency_ms": summarize(b_sent.latencies_ms),
            "replies_generated": b_replies,
            "posts_reaching_receiver": b_stats["posts"],
            "delivered": b_delivered,
        },
    }


def slow_llm(
    stack: Stack, counters: DbCounters, db: Database, *, messages: int, channels: int, concurrency: int,
    delay_ms: int = 2000,
) -> dict[str, Any]:  # fmt: skip
    stack.restart_worker({"LLM_MOCK_DELAY_MS": str(delay_ms)})
    try:
        run = LoadRun(stack, counters, channels=channels, concurrency=concurrency, name="slow-llm",
                      stall_s=max(60.0, 4 * delay_ms / 1000))  # fmt: skip
        run.segment(messages)
        result = run.result(db)
    finally:
        stack.restart_worker()
    # Each dialogue's replies are generated one after another, and one bot has at most
    # WORKER_BOT_LLM_CONCURRENCY (8) LLM calls in flight: the least it can take.
    in_parallel = min(channels, 8)
    result.update(
        llm_delay_ms=delay_ms,
        all_replies_s=result["e2e"]["wall_s"],
        least_possible_s=round(math.ceil(messages / in_parallel) * delay_ms / 1000, 1),
    )
    return result
