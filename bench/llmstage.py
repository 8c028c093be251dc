"""The LLM stage (`--mode llm`): the worker when the LLM, not the database, is the slow part.
Each scenario restarts the worker (its memory starts afresh) and offers its messages at once,
each to a conversation of its own (`channel_id` + a `chat_id` per conversation):

- LLM-bound: the mock with a 2 s delay, one bot, then the same spread over 10 bots. Ideal:
  ingest (first message sent to last acknowledged) + 2 s; efficiency = ideal / completion
  (first message sent to last reply received).
- provider limit: one bot on a provider limited to 600 requests a minute and 50 concurrent
  calls, served by the fake LLM (bench.fake_llm) enforcing the same limits: the share of calls
  answered 429, and the rate of admitted calls over the steady span against the limit.
- noisy bot: bots A and B on one provider whose concurrency is the bottleneck; B offers its
  messages at once, A sends one every 200 ms meanwhile: A's ack-to-receipt against the LLM's
  latency.
- capacity: conversations over several bots, a long LLM latency and no limits: the calls in
  flight at once at the fake LLM (one worker process), and the worker's memory then.
- bursty: chats of several messages a moment apart, under the `each` and the `burst` reply
  policies (bench.bursts).

Each reports the worker's peak resident memory (VmRSS, sampled) and its CPU per reply.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import requests
from bson import ObjectId
from pymongo import MongoClient

from bench.stack import DB_NAME, ROOT, Stack, _cpu_of, _wait_http
from bench.stats import clock, summarize
from bench.workload import Sent, _post, wait_for_replies
from devtools.embedded_mongo import die_with_parent, free_port

MB = 1024 * 1024
MOCK_DELAY_MS = 2000
PROVIDER_RPM = 600
PROVIDER_CONCURRENT = 50


class FakeLLM:
    """bench.fake_llm in a process of its own (its CPU is not the load generator's)."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def start(self) -> FakeLLM:
        log = open(self.stack.out_dir / "fake-llm.log", "wb")  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.fake_llm", "--port", str(self.port)],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, preexec_fn=die_with_parent,
        )  # fmt: skip
        _wait_http(self.url + "/stats", timeout=15, process=self.process, what="the fake LLM")
        self.stack.extra_processes["fake LLM"] = [self.process.pid]
        return self

    def configure(self, *, latency_ms: int, max_concurrent: int | None = None,
                  requests_per_minute: int | None = None) -> None:  # fmt: skip
        body = {"latency_ms": latency_ms, "max_concurrent": max_concurrent, "requests_per_minute": requests_per_minute}
        requests.post(self.url + "/config", json=body, timeout=10).raise_for_status()

    def stats(self) -> dict[str, Any]:
        return requests.get(self.url + "/stats", timeout=10).json()  # type: ignore[no-any-return]

    def stop(self) -> None:
        self.stack.extra_processes.pop("fake LLM", None)
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def rss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class WorkerSampler:
    """The worker's resident memory every `interval_s` (and, with a fake LLM, the calls it
    holds in flight at that moment), in a thread of this process, while a scenario runs."""

    def __init__(self, stack: Stack, fake: FakeLLM | None, *, interval_s: float = 0.2) -> None:
        assert stack.worker is not None
        self.stack = stack
        self.pid = stack.worker.pid
        self.fake = fake
        self.interval_s = interval_s
        self.samples: list[tuple[float, int, int | None]] = []  # (clock, rss bytes, calls in flight)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self.cpu_before = 0.0
        self.cpu_s = 0.0
        self.started = 0.0
        self.wall_s = 0.0
        self.stack_before: dict[str, float] = {}
        self.stack_cpu: dict[str, float] = {}

    def __enter__(self) -> WorkerSampler:
        self.cpu_before = _cpu_of(self.pid)
        self.stack_before = self.stack.cpu_seconds()
        self.started = clock()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.cpu_s = _cpu_of(self.pid) - self.cpu_before
        self.wall_s = clock() - self.started
        after = self.stack.cpu_seconds()
        self.stack_cpu = {name: after[name] - self.stack_before.get(name, 0.0) for name in after}

    def _run(self) -> None:
        session = requests.Session()
        while not self._stop.is_set():
            in_flight = None
            if self.fake is not None:
                try:
                    in_flight = int(session.get(self.fake.url + "/stats", timeout=2).json()["in_flight"])
                except (requests.RequestException, ValueError, KeyError):
                    in_flight = None
            self.samples.append((clock(), rss_bytes(self.pid), in_flight))
            self._stop.wait(self.interval_s)

    def result(self, *, replies: int) -> dict[str, Any]:
        rss = [s[1] for s in self.samples if s[1]]
        out: dict[str, Any] = {
            "rss_start_mb": round(rss[0] / MB, 1) if rss else None,
            "rss_peak_mb": round(max(rss) / MB, 1) if rss else None,
            "cpu_s": round(self.cpu_s, 2),
            "cpu_ms_per_reply": round(self.cpu_s * 1000 / replies, 2) if replies else None,
            # Each process's CPU as a share of one core over the scenario: where the time went.
            "wall_s": round(self.wall_s, 1),
            "cpu_share_of_core": {name: round(cpu / self.wall_s, 2) for name, cpu in self.stack_cpu.items()
                                  if self.wall_s and cpu > 0.005},
        }  # fmt: skip
        flights = [s for s in self.samples if s[2] is not None]
        if flights:
            top = max(flights, key=lambda s: (s[2], s[1]))
            out["sampled_peak_in_flight"] = top[2]
            out["rss_at_peak_in_flight_mb"] = round(top[1] / MB, 1)
        return out


@dataclass
class Conversation:
    secret: str
    body: dict[str, Any]


def conversations(stack: Stack, *, name: str, count: int, bots: int, path: str,
                  llm_provider_id: str | None = None) -> tuple[list[Conversation], list[str]]:  # fmt: skip
    """`count` conversations spread over `bots` bots (one channel each), one message each, in
    the order the bots take turns. Returns them and the bots' ids."""
    made: list[list[Conversation]] = []
    bot_ids = []
    for b in range(bots):
        bot_id, secret = stack.create_bot(f"bench {name} {b}", llm_provider_id=llm_provider_id)
        channel = stack.create_channel(bot_id=bot_id, name=f"{name} {b}", path=path)
        bot_ids.append(bot_id)
        made.append([Conversation(secret, _body(channel, f"{name}-{b}-{i}", i)) for i in range(b, count, bots)])
    interleaved = [c for group in zip(*made, strict=False) for c in group]
    interleaved += [c for group in made for c in group[len(made[-1]) :]]
    return interleaved, bot_ids


def _body(channel_id: str, chat_id: str, index: int) -> dict[str, Any]:
    return {"message_id": str(uuid.uuid4()), "chat_id": chat_id, "channel_id": channel_id,
            "text": f"Hello, I need help with order {index}", "message_sender": "customer"}  # fmt: skip


async def offer(url: str, items: list[Conversation], *, concurrency: int = 32, timeout_s: float = 60.0) -> Sent:
    """Every message as fast as the webhook takes them (`concurrency` requests in flight)."""
    sent = Sent()
    queue = list(reversed(items))
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=timeout_s)) as session:

        async def worker() -> None:
            while queue:
                item = queue.pop()
                headers = {"x-chatbot_auth_token": f"Bearer {item.secret}"}
                await _post(session, url, item.body, headers, sent)

        sent.started_at = sent.finished_at = clock()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return sent


async def trickle(url: str, items: list[Conversation], *, every_s: float, timeout_s: float = 60.0) -> Sent:
    """One message every `every_s`, whatever the answers take (an open loop)."""
    sent = Sent()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as session:
        sent.started_at = sent.finished_at = clock()
        tasks = []
        for i, item in enumerate(items):
            delay = sent.started_at + i * every_s - clock()
            if delay > 0:
                await asyncio.sleep(delay)
            headers = {"x-chatbot_auth_token": f"Bearer {item.secret}"}
            tasks.append(asyncio.create_task(_post(session, url, item.body, headers, sent)))
        await asyncio.gather(*tasks)
    return sent


def delivered(stack: Stack, sent: Sent, path: str) -> dict[str, Any]:
    """Each acknowledged message's reply at the receiver: ack to receipt, completion, checks."""
    receipts = stack.receiver_receipts(path)
    acked = sent.acks
    arrived = [receipts[m][0] for m in acked if m in receipts]
    first_ack = min(acked.values()) if acked else sent.started_at
    return {
        "messages": sum(sent.statuses.values()) + sum(sent.errors.values()),
        "non_2xx": sent.non_2xx,
        "ingest_s": round(sent.finished_at - sent.started_at, 3),
        "completion_s": round(max(arrived) - sent.started_at, 3) if arrived else None,
        "first_reply_s": round(min(arrived) - sent.started_at, 3) if arrived else None,
        "first_ack_s": round(first_ack - sent.started_at, 3),
        "webhook_latency_ms": summarize(sent.latencies_ms),
        "ack_to_receipt_ms": summarize([(receipts[m][0] - t) * 1000 for m, t in acked.items() if m in receipts]),
        "replies_received": len(arrived),
        "replies_lost": sum(1 for m in acked if m not in receipts),
        "replies_duplicated": sum(1 for m in acked if receipts.get(m, (0, 0))[1] > 1),
    }


def time_split(stack: Stack, bot_ids: list[str]) -> dict[str, Any]:
    """Where each reply's time went, from the stored documents (ms): the customer message
    stored -> the LLM's answer (of which the call itself, `llm_latency_ms`; the rest is the
    claim, the provider's pacing and the bot's slots) -> delivered."""
    client: MongoClient = MongoClient(stack.mongo.url)
    try:
        coll = client[DB_NAME].dialogues_message
        bots = [ObjectId(b) for b in bot_ids]
        users = {d["message_id"]: d["created_at"] for d in coll.find(
            {"chat_bot_id": {"$in": bots}, "role": "USER"}, {"message_id": 1, "created_at": 1})}  # fmt: skip
        to_answer, call, before_call, to_delivery, attempts = [], [], [], [], []
        for reply in coll.find({"chat_bot_id": {"$in": bots}, "role": "ASSISTANT"},
                               {"in_reply_to": 1, "created_at": 1, "delivered_at": 1, "llm_latency_ms": 1,
                                "llm_attempts": 1}):  # fmt: skip
            asked = users.get(reply.get("in_reply_to"))
            if asked is None:
                continue
            answer_ms = (reply["created_at"] - asked).total_seconds() * 1000
            to_answer.append(answer_ms)
            if reply.get("llm_latency_ms") is not None:
                call.append(float(reply["llm_latency_ms"]))
                before_call.append(answer_ms - float(reply["llm_latency_ms"]))
            if reply.get("delivered_at") is not None:
                to_delivery.append((reply["delivered_at"] - reply["created_at"]).total_seconds() * 1000)
            attempts.append(int(reply.get("llm_attempts") or 1))
    finally:
        client.close()
    return {
        "stored_to_answer_ms": summarize(to_answer),
        "llm_call_ms": summarize(call),
        "stored_to_call_start_ms": summarize(before_call),
        "answer_to_delivered_ms": summarize(to_delivery),
        "llm_retries": sum(a - 1 for a in attempts),
    }


def _correct(r: dict[str, Any]) -> bool:
    return r["non_2xx"] == 0 and r["replies_lost"] == 0 and r["replies_duplicated"] == 0 and r["replies_received"] > 0


def _say(text: str) -> None:
    print(text, flush=True)


# --- the scenarios ------------------------------------------------------------------------------


def llm_bound(stack: Stack, *, conversations_n: int, bots: int, stall_s: float) -> dict[str, Any]:
    name = f"llm-bound-{bots}"
    path = f"/hook/{name}"
    stack.restart_worker({"LLM_MOCK_DELAY_MS": str(MOCK_DELAY_MS)})
    items, bot_ids = conversations(stack, name=name, count=conversations_n, bots=bots, path=path)
    with WorkerSampler(stack, None) as sampler:
        sent = asyncio.run(offer(stack.app_url, items))
        wait_for_replies(stack, path=path, expected=len(sent.acks), stall_s=stall_s)
    r = delivered(stack, sent, path)
    r.update(conversations=conversations_n, bots=bots, llm_latency_ms=MOCK_DELAY_MS, llm="mock")
    ideal = r["ingest_s"] + MOCK_DELAY_MS / 1000
    r["ideal_s"] = round(ideal, 3)
    r["efficiency"] = round(ideal / r["completion_s"], 3) if r["completion_s"] else 0.0
    r["time_split"] = time_split(stack, bot_ids)
    r["worker"] = sampler.result(replies=r["replies_received"])
    r["correct"] = _correct(r)
    return r


def steady_rate(admitted_per_s: list[int], *, skip_s: int) -> tuple[float | None, int]:
    """Calls admitted a minute over the steady span: after the first `skip_s` seconds (the
    bucket's initial burst), up to the last full second with calls (the backlog's tail)."""
    last = max((i for i, n in enumerate(admitted_per_s) if n), default=-1)
    first = next((i for i, n in enumerate(admitted_per_s) if n), 0) + skip_s
    span = admitted_per_s[first:last]  # the last second is partial
    if len(span) < 3:
        return None, len(span)
    return round(sum(span) * 60 / len(span), 1), len(span)


def provider_limit(stack: Stack, fake: FakeLLM, *, messages: int, latency_ms: int, stall_s: float) -> dict[str, Any]:
    name = "provider-limit"
    path = f"/hook/{name}"
    stack.restart_worker()
    fake.configure(latency_ms=latency_ms, max_concurrent=PROVIDER_CONCURRENT, requests_per_minute=PROVIDER_RPM)
    provider = stack.create_provider(name=f"bench {name}", base_url=fake.base_url,
                                     max_concurrent=PROVIDER_CONCURRENT, requests_per_minute=PROVIDER_RPM)  # fmt: skip
    items, bot_ids = conversations(stack, name=name, count=messages, bots=1, path=path, llm_provider_id=provider)
    with WorkerSampler(stack, fake) as sampler:
        sent = asyncio.run(offer(stack.app_url, items))
        wait_for_replies(stack, path=path, expected=len(sent.acks), stall_s=stall_s)
    llm = fake.stats()
    r = delivered(stack, sent, path)
    burst = PROVIDER_RPM * llm["burst_s"] / 60
    rate, span = steady_rate(llm["admitted_per_s"], skip_s=int(llm["burst_s"]) + 4)
    r.update(
        conversations=messages, llm_latency_ms=latency_ms, limit_rpm=PROVIDER_RPM, limit_concurrent=PROVIDER_CONCURRENT,
        llm_requests=llm["requests"], llm_statuses=llm["statuses"], llm_rejected=llm["rejected"],
        llm_peak_in_flight=llm["peak_in_flight"],
        share_429=round(llm["statuses"].get("429", 0) / llm["requests"], 4) if llm["requests"] else 0.0,
        steady_rate_per_min=rate, steady_span_s=span,
        rate_share=round(rate / PROVIDER_RPM, 3) if rate else None,
        # The least it can take: the server's burst at once, the rest at the limit's pace.
        least_possible_s=round(max(0.0, messages - burst) * 60 / PROVIDER_RPM + latency_ms / 1000, 1),
        admitted_per_s=llm["admitted_per_s"], time_split=time_split(stack, bot_ids),
    )  # fmt: skip
    r["worker"] = sampler.result(replies=r["replies_received"])
    r["correct"] = _correct(r)
    return r


def noisy_bot(stack: Stack, fake: FakeLLM, *, b_messages: int, a_messages: int, latency_ms: int, concurrent: int,
              a_every_s: float = 0.2, a_after_s: float = 2.0, stall_s: float) -> dict[str, Any]:  # fmt: skip
    name = "noisy"
    a_path, b_path = f"/hook/{name}-a", f"/hook/{name}-b"
    stack.restart_worker()
    fake.configure(latency_ms=latency_ms, max_concurrent=concurrent)
    provider = stack.create_provider(name=f"bench {name}", base_url=fake.base_url, max_concurrent=concurrent)
    b_items, b_bots = conversations(stack, name=f"{name}-b", count=b_messages, bots=1, path=b_path,
                               llm_provider_id=provider)  # fmt: skip
    a_items, a_bots = conversations(stack, name=f"{name}-a", count=a_messages, bots=1, path=a_path,
                               llm_provider_id=provider)  # fmt: skip

    async def both() -> tuple[Sent, Sent]:
        b = asyncio.create_task(offer(stack.app_url, b_items))
        # A starts once B's backlog has formed at the provider.
        await asyncio.sleep(a_after_s)
        a = await trickle(stack.app_url, a_items, every_s=a_every_s)
        return a, await b

    with WorkerSampler(stack, fake) as sampler:
        a_sent, b_sent = asyncio.run(both())
        wait_for_replies(stack, path=a_path, expected=len(a_sent.acks), stall_s=stall_s)
        a_done = clock()
        wait_for_replies(stack, path=b_path, expected=len(b_sent.acks), stall_s=stall_s)
    llm = fake.stats()
    a, b = delivered(stack, a_sent, a_path), delivered(stack, b_sent, b_path)
    a["time_split"], b["time_split"] = time_split(stack, a_bots), time_split(stack, b_bots)
    # Was B still waiting for the provider when A's last reply came? (Otherwise A ran alone at the end.)
    b_receipts = stack.receiver_receipts(b_path)
    b_after_a = sum(1 for t, _n in b_receipts.values() if t > a_done)
    r: dict[str, Any] = {
        "a": a, "b": b, "llm_latency_ms": latency_ms, "limit_concurrent": concurrent, "a_every_ms": a_every_s * 1000,
        "llm_requests": llm["requests"], "llm_statuses": llm["statuses"], "llm_peak_in_flight": llm["peak_in_flight"],
        "b_replies_after_a_finished": b_after_a,
        "a_p50_over_latency": round(a["ack_to_receipt_ms"]["p50"] / latency_ms, 3)
        if a["ack_to_receipt_ms"].get("p50") is not None else None,
    }  # fmt: skip
    r["worker"] = sampler.result(replies=a["replies_received"] + b["replies_received"])
    r["correct"] = _correct(a) and _correct(b)
    return r


def capacity(stack: Stack, fake: FakeLLM, *, conversations_n: int, bots: int, latency_ms: int,
             stall_s: float) -> dict[str, Any]:  # fmt: skip
    name = "capacity"
    path = f"/hook/{name}"
    # The calls must outlast the time the webhook takes to ingest them all: a longer budget.
    stack.restart_worker({"LLM_TIMEOUT_S": str(3 * latency_ms / 1000)})
    fake.configure(latency_ms=latency_ms)
    provider = stack.create_provider(name=f"bench {name}", base_url=fake.base_url)
    items, bot_ids = conversations(stack, name=name, count=conversations_n, bots=bots, path=path,
                                   llm_provider_id=provider)  # fmt: skip
    with WorkerSampler(stack, fake) as sampler:
        sent = asyncio.run(offer(stack.app_url, items))
        wait_for_replies(stack, path=path, expected=len(sent.acks), stall_s=stall_s)
    llm = fake.stats()
    r = delivered(stack, sent, path)
    r.update(conversations=conversations_n, bots=bots, llm_latency_ms=latency_ms, llm_requests=llm["requests"],
             llm_statuses=llm["statuses"], peak_in_flight=llm["peak_in_flight"],
             time_split=time_split(stack, bot_ids))  # fmt: skip
    r["worker"] = sampler.result(replies=r["replies_received"])
    r["correct"] = _correct(r)
    return r


SCENARIOS = ["llm-bound", "provider-limit", "noisy-bot", "capacity", "bursty"]


def run_llm_stage(stack: Stack, *, quick: bool, scenarios: list[str], results: dict[str, Any]) -> None:
    """The scenarios in turn, each result in `results` as soon as it is measured (a run stopped
    early keeps them); the worker is restarted with the default settings at the end."""
    results["worker_env"] = {k: v for k, v in os.environ.items() if k.startswith(("WORKER_", "LLM_"))}
    fake = FakeLLM(stack).start()
    try:
        for bots in (1, 10) if "llm-bound" in scenarios else ():
            n = 60 if quick else 300
            _say(f"    LLM-bound: {n} conversations, one message each, mock LLM {MOCK_DELAY_MS} ms, {bots} bot(s)")
            r = results[f"llm_bound_{bots}"] = llm_bound(stack, conversations_n=n, bots=bots, stall_s=30)
            _say(f"      ingest {r['ingest_s']} s, completion {r['completion_s']} s, ideal {r['ideal_s']} s: "
                 f"efficiency {r['efficiency']:.0%}; worker peak {r['worker']['rss_peak_mb']} MB, "
                 f"{r['worker']['cpu_ms_per_reply']} ms CPU/reply; correct {r['correct']}")  # fmt: skip
        if "provider-limit" in scenarios:
            n, latency = (200, 2000) if quick else (1000, 2000)
            _say(f"    provider limit: {n} messages at once, provider {PROVIDER_RPM}/min and {PROVIDER_CONCURRENT} "
                 f"concurrent, LLM {latency} ms")  # fmt: skip
            r = results["provider_limit"] = provider_limit(stack, fake, messages=n, latency_ms=latency, stall_s=60)
            _say(f"      429s {r['share_429']:.2%} of {r['llm_requests']}; steady {r['steady_rate_per_min']}/min "
                 f"over {r['steady_span_s']} s ({r['rate_share'] or 0:.0%} of the limit); completion "
                 f"{r['completion_s']} s (least {r['least_possible_s']} s); worker peak {r['worker']['rss_peak_mb']} "
                 f"MB, {r['worker']['cpu_ms_per_reply']} ms CPU/reply; correct {r['correct']}")  # fmt: skip
        if "noisy-bot" in scenarios:
            b_n, a_n, latency, concurrent = (300, 20, 2000, 50) if quick else (3000, 100, 2000, 100)
            _say(f"    noisy bot: B {b_n} messages at once, A one every 200 ms ({a_n}), one provider of {concurrent} "
                 f"concurrent calls, LLM {latency} ms")  # fmt: skip
            r = results["noisy_bot"] = noisy_bot(stack, fake, b_messages=b_n, a_messages=a_n, latency_ms=latency,
                                                 concurrent=concurrent, stall_s=60)  # fmt: skip
            a_ms, split = r["a"]["ack_to_receipt_ms"], r["a"]["time_split"]
            _say(f"      A ack->receipt p50 {a_ms['p50']} ms, p90 {a_ms['p90']} ms ({r['a_p50_over_latency']} x "
                 f"latency; stored->call p50 {split['stored_to_call_start_ms'].get('p50')} ms, call p50 "
                 f"{split['llm_call_ms'].get('p50')} ms, answer->delivered p50 "
                 f"{split['answer_to_delivered_ms'].get('p50')} ms); B completion {r['b']['completion_s']} s; "
                 f"B replies after A's last {r['b_replies_after_a_finished']}; worker peak "
                 f"{r['worker']['rss_peak_mb']} MB, {r['worker']['cpu_ms_per_reply']} ms CPU/reply; "
                 f"correct {r['correct']}")  # fmt: skip
        if "capacity" in scenarios:
            n, bots, latency = (200, 2, 5000) if quick else (1200, 3, 90000)
            _say(f"    capacity: {n} conversations over {bots} bots, LLM {latency} ms, no limits")
            r = results["capacity"] = capacity(stack, fake, conversations_n=n, bots=bots, latency_ms=latency,
                                               stall_s=latency / 1000 + 30)  # fmt: skip
            _say(f"      peak in flight {r['peak_in_flight']}, worker RSS then "
                 f"{r['worker'].get('rss_at_peak_in_flight_mb')} MB (peak {r['worker']['rss_peak_mb']} MB); "
                 f"{r['worker']['cpu_ms_per_reply']} ms CPU/reply; completion {r['completion_s']} s; "
                 f"correct {r['correct']}")  # fmt: skip
        if "bursty" in scenarios:
            from bench.bursts import bursty

            chats = 20 if quick else 100
            for policy in ("each", "burst"):
                _say(f"    bursty chats, reply policy {policy}: {chats} chats of 4 messages 300 ms apart, LLM 2000 ms")
                r = results[f"bursty_{policy}"] = bursty(stack, fake, policy=policy, chats=chats, per_chat=4,
                                                         gap_s=0.3, spread_s=5.0, stall_s=30)  # fmt: skip
                _say(f"      {r['llm_requests']} LLM calls for {r['messages']} messages "
                     f"({r['llm_calls_per_message']}/message); last message to reply p50 "
                     f"{r['last_message_to_reply_ms'].get('p50')} ms, p90 {r['last_message_to_reply_ms'].get('p90')} "
                     f"ms; correct {r['correct']}")  # fmt: skip
    finally:
        fake.stop()
        stack.restart_worker()
