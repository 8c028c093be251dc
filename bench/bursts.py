"""Bursty chats (`--mode llm`, scenario `bursty`): customers who write several short messages
in a row. Each chat sends `per_chat` messages `gap_s` apart, the chats starting spread over
`spread_s`; the LLM is the fake one (bench.fake_llm) with a 2 s latency. Run once for a bot
with the `each` reply policy and once for one with `burst`, and reported for each: LLM calls
per customer message (the fake LLM's count) and the time from each chat's last message
acknowledged to the reply that answers it arriving at the receiver.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING, Any

import aiohttp

from bench.stats import clock, summarize
from bench.workload import Sent, _post, wait_for_replies

if TYPE_CHECKING:
    from bench.llmstage import FakeLLM
    from bench.stack import Stack

LATENCY_MS = 2000
QUIET_MS = 1500
MAX_WAIT_MS = 8000


async def _chats(url: str, secret: str, schedule: list[tuple[float, dict[str, Any]]]) -> Sent:
    """Each body at its time (seconds from the start), whatever the answers take."""
    sent = Sent()
    headers = {"x-chatbot_auth_token": f"Bearer {secret}"}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        sent.started_at = sent.finished_at = clock()
        tasks = []
        for at, body in schedule:
            delay = sent.started_at + at - clock()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(_post(session, url, body, headers, sent)))
        await asyncio.gather(*tasks)
    return sent


def bursty(stack: Stack, fake: FakeLLM, *, policy: str, chats: int, per_chat: int, gap_s: float, spread_s: float,
           stall_s: float) -> dict[str, Any]:  # fmt: skip
    name = f"bursty-{policy}"
    path = f"/hook/{name}"
    stack.restart_worker()
    fake.configure(latency_ms=LATENCY_MS)
    provider = stack.create_provider(name=f"bench {name}", base_url=fake.base_url)
    bot_id, secret = stack.create_bot(f"bench {name}", llm_provider_id=provider, reply_policy=policy,
                                      burst_quiet_ms=QUIET_MS, burst_max_wait_ms=MAX_WAIT_MS)  # fmt: skip
    channel = stack.create_channel(bot_id=bot_id, name=name, path=path)
    schedule: list[tuple[float, dict[str, Any]]] = []
    last_of_chat: dict[str, str] = {}
    for c in range(chats):
        start = spread_s * c / chats
        for k in range(per_chat):
            body = {"message_id": str(uuid.uuid4()), "chat_id": f"{name}-{c}", "channel_id": channel,
                    "text": f"part {k + 1} of what chat {c} has to say", "message_sender": "customer"}  # fmt: skip
            schedule.append((start + k * gap_s, body))
            last_of_chat[body["chat_id"]] = body["message_id"]
    schedule.sort(key=lambda item: item[0])
    sent = asyncio.run(_chats(stack.app_url, secret, schedule))
    # A reply per chat under `burst` (it answers the chat's last message), per message under `each`.
    expected = chats if policy == "burst" else len(sent.acks)
    wait_for_replies(stack, path=path, expected=expected, stall_s=stall_s)
    receipts = stack.receiver_receipts(path)
    llm = fake.stats()
    from bench.llmstage import time_split

    split = time_split(stack, [bot_id])
    lasts = [m for m in last_of_chat.values() if m in sent.acks]
    to_reply = [(receipts[m][0] - sent.acks[m]) * 1000 for m in lasts if m in receipts]
    messages = sum(sent.statuses.values()) + sum(sent.errors.values())
    return {
        "policy": policy, "chats": chats, "per_chat": per_chat, "gap_ms": gap_s * 1000,
        "llm_latency_ms": LATENCY_MS, "quiet_ms": QUIET_MS, "messages": messages, "non_2xx": sent.non_2xx,
        "llm_requests": llm["requests"],
        "llm_calls_per_message": round(llm["requests"] / messages, 3) if messages else None,
        "replies": sum(n for _t, n in receipts.values()),
        "last_message_to_reply_ms": summarize(to_reply),
        "chats_answered": len(to_reply),
        # For a burst, "stored" is its last message's arrival, so "to call" includes the quiet time.
        "time_split": split,
        # The chat's last message is answered exactly once (by a burst's reply or its own).
        "correct": sent.non_2xx == 0 and len(to_reply) == len(lasts) == chats
        and all(receipts[m][1] == 1 for m in lasts),
    }  # fmt: skip
