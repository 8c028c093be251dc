"""The floor: what one customer message costs through the same pipeline without any framework.

The same database operations as the app, written with pymongo (the same documents, from
dialogues.documents), and the same POST with requests:

- ingest (dialogues/ingest.py + dialogues/store/), from T threads in the benchmark's process,
  as the load generator's requests would be: the dialogue's reservation (a compare-and-set
  `update_one` on its `last_seq`, which also sets `work_due_at`; on a conflict, one read of
  `last_seq` and another try; the dialogue found or created on its first message) and the
  message insert;
- the worker (worker/loop.py + worker/pipeline.py + worker/delivery.py), in a process of its own as `run_worker`
  is, with T threads: find the due dialogues (one read on the sparse index of `work_due_at`,
  sorted, as many as threads are free) and claim each (`update_one` by `_id` while free); read
  a window of its messages by (dialogue_id, seq), ask the mock LLM, POST the reply (one
  attempt, `webhook-id` header: the reply's id, derived from the message it answers), then
  store it with that outcome (one insert); a reply stored earlier is recorded with an
  update_one conditional on its claim_token; a full read, or a release that finds new work, renews the claim (update
  + read) and reads again; at the end, mark the customer messages answered in this claim
  replied (one update_many) and release the dialogue (update_one conditional on the claim token
  and last_seq); an idle worker looks again every 25 ms (WORKER_POLL_MS), and after every
  finished dialogue.

Bot and channel look-ups are done once up front, as the app's per-process caches do under
load. The process split and the one connection per process (`maxPoolSize=1`) are the app's.
Left out, because they are the framework's or the app's extras rather than the pipeline's:
authentication, validation, logging, the bulkheads (in-memory counters) and the breaker
(no database work while a channel succeeds), the channel's "last delivery" note (a write per
channel every 5 s), the 1-second cache refreshes and the worker's housekeeping (1 s / 10 s).

The constants (batch sizes, delays, the lease) are imported from the modules that own them;
Django is loaded for that only. Keep the rest in step with dialogues/ingest.py,
dialogues/store/, worker/loop.py, worker/pipeline.py and worker/delivery.py: the app's end-to-end throughput is
reported as a fraction of this floor (`make bench` records a hash of those files with its
results).

`python -m bench.floor worker --url U --db D --bot B --threads T` runs the floor's worker until
SIGTERM, then prints its counts as one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import secrets
import signal
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import django
import requests
from bson import ObjectId
from cryptography.fernet import Fernet
from pymongo import MongoClient
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError
from requests.adapters import HTTPAdapter

from bench.stats import clock
from core.datetimes import aware
from dialogues.documents import message_document
from llm.mock import mock_llm_text


def _django_setup() -> None:
    """The app's constants come from the modules that own them, which need Django's settings and
    app registry; nothing else of the framework is used. Loading the settings needs a secret
    key (and an encryption key), which the floor never uses: when none is set, a throwaway one is lent for the load
    only, so that no process started later inherits it."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    lent = {
        name: value
        for name, value in (
            ("DJANGO_SECRET_KEY", secrets.token_urlsafe(50)),
            ("SECRETS_ENCRYPTION_KEYS", Fernet.generate_key().decode()),
        )
        if name not in os.environ
    }
    os.environ.update(lent)
    try:
        django.setup()
    finally:
        for name in lent:
            del os.environ[name]


_django_setup()

from django.conf import settings  # noqa: E402

from core.crypto import secret_decrypt  # noqa: E402
from dialogues.store.claims import dialogue_lease  # noqa: E402
from dialogues.store.collections import EPOCH, OWED_STATES  # noqa: E402
from dialogues.store.reservation import RESERVE_TRIES, WORK_DUE_DELAY  # noqa: E402
from worker.pipeline import (  # noqa: E402
    BATCH,
    HISTORY_SLACK,
    REPLY_ID_NAMESPACE,
    UNFILLED_GRACE,
    UNFILLED_RECHECK,
)

# Bench bots set no context size of their own: the default applies.
CONTEXT_MESSAGES: int = settings.LLM_CONTEXT_MESSAGES
WINDOW = CONTEXT_MESSAGES + HISTORY_SLACK + BATCH
POLL_S = settings.WORKER_POLL_MS / 1000
LEASE = dialogue_lease()


def _now() -> datetime:
    return datetime.now(UTC)


# --- ingest ------------------------------------------------------------------------------------


class FloorIngest:
    """dialogue_reserve + message_insert, for customer messages."""

    def __init__(self, *, db: Database, chat_bot_id: ObjectId):
        self.dialogues = db.dialogues_dialogue
        self.messages = db.dialogues_message
        self.chat_bot_id = chat_bot_id
        # (dialogue id, last position seen) by channel, shared by the threads as the app's
        # per-process cache is.
        self.seen: dict[ObjectId, tuple[ObjectId, int]] = {}
        self.lock = threading.Lock()
        self.conflicts = 0

    def _find_or_create(self, key: dict[str, Any], now: datetime) -> tuple[ObjectId, int]:
        for _ in range(3):
            doc = self.dialogues.find_one(key, {"_id": 1, "last_seq": 1})
            if doc is not None:
                return doc["_id"], int(doc.get("last_seq") or 0)
            try:
                self.dialogues.update_one(
                    key,
                    {"$setOnInsert": {"created_at": now, "last_message_at": now, "last_seq": 0, "message_count": 0,
                                      "claim_until": EPOCH}},
                    upsert=True,
                )  # fmt: skip
            except DuplicateKeyError:
                pass
        raise RuntimeError("dialogue upsert kept losing races")

    def store(self, *, channel_id: ObjectId, chat_id: str, message_id: str, text: str) -> None:
        now = _now()
        key = {"chat_bot_id": self.chat_bot_id, "channel_id": channel_id, "chat_id": chat_id}
        update = {"$inc": {"last_seq": 2, "message_count": 2}, "$max": {"last_message_at": now, "claim_until": EPOCH},
                  "$set": {"work_due_at": now + WORK_DUE_DELAY}}  # fmt: skip
        seen = self.seen.get(channel_id)
        if seen is None:
            seen = self._find_or_create(key, now)
        dialogue_id, last_seq = seen
        for _ in range(RESERVE_TRIES):
            if self.dialogues.update_one({"_id": dialogue_id, "last_seq": last_seq}, update).modified_count == 1:
                self.seen[channel_id] = (dialogue_id, last_seq + 2)
                break
            with self.lock:
                self.conflicts += 1
            doc = self.dialogues.find_one({"_id": dialogue_id}, {"last_seq": 1})
            assert doc is not None
            last_seq = int(doc.get("last_seq") or 0)
        else:
            raise RuntimeError("dialogue reservation kept losing races")
        doc = message_document(
            dialogue_id=dialogue_id, chat_bot_id=self.chat_bot_id, channel_id=channel_id, message_id=message_id,
            role="USER", text=text, created_at=_now(), seq=last_seq + 1, reply_state="awaiting",
        )  # fmt: skip
        self.messages.insert_one(doc)


# --- the worker ----------------------------------------------------------------------------------

CLAIM_PROJECTION = {"chat_bot_id": 1, "channel_id": 1, "chat_id": 1, "last_seq": 1, "done_seq": 1,
                    "last_message_at": 1, "voids": 1}  # dialogues.store.claims.CLAIM_PROJECTION  # fmt: skip


class Claim:
    def __init__(self, doc: dict[str, Any], token: str):
        self.dialogue_id: ObjectId = doc["_id"]
        self.chat_bot_id: ObjectId = doc["chat_bot_id"]
        self.channel_id: ObjectId = doc["channel_id"]
        self.chat_id: str = doc["chat_id"]
        self.token = token
        self.last_seq = int(doc.get("last_seq") or 0)
        self.done_seq = int(doc.get("done_seq") or 0)
        self.last_message_at: datetime | None = doc.get("last_message_at")
        self.voids = {int(s) for s in doc.get("voids") or []}
        # Customer messages answered in this claim, marked replied at its end.
        self.replied: list[ObjectId] = []


class FloorWorker:
    def __init__(self, *, db: Database, threads: int, channels: dict[ObjectId, tuple[str, str]]):
        self.dialogues = db.dialogues_dialogue
        self.messages = db.dialogues_message
        self.threads = threads
        self.channels = channels  # channel id -> (url, token), read once
        self.pool = ThreadPoolExecutor(max_workers=threads)
        self.stopping = threading.Event()
        self.wake = threading.Event()
        self.lock = threading.Lock()
        self.in_flight: set[ObjectId] = set()
        self.counts = {
            "claims": 0,
            "empty_polls": 0,
            "passes": 0,
            "replies": 0,
            "waits": 0,
            "release_conflicts": 0,
            "errors": 0,
        }
        self.session = requests.Session()
        self.session.mount("http://", HTTPAdapter(pool_connections=32, pool_maxsize=64, max_retries=0))

    def count(self, name: str) -> None:
        with self.lock:
            self.counts[name] += 1

    # worker/loop.py
    def run(self) -> None:
        while not self.stopping.is_set():
            if not self.schedule():
                self.wake.wait(POLL_S)
                self.wake.clear()

    def schedule(self) -> bool:
        claimed = False
        while not self.stopping.is_set():
            with self.lock:
                free = self.threads - len(self.in_flight)
            if free <= 0:
                break
            due = self.due(limit=free)
            if not due:
                self.count("empty_polls")
                break
            for doc in due:
                with self.lock:
                    if doc["_id"] in self.in_flight:
                        continue
                claim = self.claim(doc)
                if claim is None:
                    continue
                self.count("claims")
                with self.lock:
                    self.in_flight.add(claim.dialogue_id)
                self.pool.submit(self.run_one, claim)
                claimed = True
            if len(due) < free:
                break
        return claimed

    def run_one(self, claim: Claim) -> None:
        try:
            try:
                self.work(claim)
            finally:
                self.mark_replied(claim)
        except Exception:  # noqa: BLE001 - counted; the lease expires by itself
            self.count("errors")
        finally:
            with self.lock:
                self.in_flight.discard(claim.dialogue_id)
            self.wake.set()

    # dialogues/store/claims.py
    def due(self, *, limit: int) -> list[dict[str, Any]]:
        now = _now()
        query = {"work_due_at": {"$lte": now}, "claim_until": {"$lt": now}}
        return list(self.dialogues.find(query, CLAIM_PROJECTION).sort([("work_due_at", 1)]).limit(limit))

    def claim(self, doc: dict[str, Any]) -> Claim | None:
        now = _now()
        token = secrets.token_hex(8)
        result = self.dialogues.update_one(
            {"_id": doc["_id"], "claim_until": {"$lt": now}},
            {"$set": {"claim_until": now + LEASE, "claim_token": token}},
        )
        return Claim(doc, token) if result.modified_count == 1 else None

    def renew(self, claim: Claim) -> bool:
        renewed = self.dialogues.update_one(
            {"_id": claim.dialogue_id, "claim_token": claim.token}, {"$set": {"claim_until": _now() + LEASE}}
        )
        if renewed.matched_count != 1:
            return False
        doc = self.dialogues.find_one({"_id": claim.dialogue_id}, {"last_seq": 1, "last_message_at": 1, "voids": 1})
        if doc is None:
            return False
        claim.last_seq = int(doc.get("last_seq") or 0)
        claim.last_message_at = doc.get("last_message_at")
        claim.voids.update(int(s) for s in doc.get("voids") or [])
        return True

    def release(self, claim: Claim, *, due_at: datetime | None = None, settled: bool = False) -> bool:
        match: dict[str, Any] = {"_id": claim.dialogue_id, "claim_token": claim.token}
        update: dict[str, Any] = {"$max": {"done_seq": claim.done_seq}}
        if any(seq <= claim.done_seq for seq in claim.voids):
            update["$pull"] = {"voids": {"$lte": claim.done_seq}}
        sets: dict[str, Any] = {"claim_until": EPOCH}
        unset = {"claim_token": ""}
        if due_at is not None:
            sets["work_due_at"] = due_at
            unset["parked"] = ""
        elif settled:
            match["last_seq"] = claim.last_seq
            unset.update(work_due_at="", parked="")
        else:
            sets["work_due_at"] = _now()
        update["$set"] = sets
        update["$unset"] = unset
        return self.dialogues.update_one(match, update).matched_count == 1

    def mark_replied(self, claim: Claim) -> None:
        """dialogues.store.replies.users_mark_replied: one write per claim, not one per reply."""
        if claim.replied:
            self.messages.update_many(
                {"_id": {"$in": claim.replied}, "reply_state": "awaiting"},
                {"$set": {"reply_state": "replied", "next_attempt_at": None}},
            )
            claim.replied.clear()

    def unfilled_wait(self, claim: Claim) -> datetime | None:
        if claim.last_message_at is None:
            return None
        now = _now()
        if aware(claim.last_message_at) + UNFILLED_GRACE <= now:
            return None
        return now + UNFILLED_RECHECK

    # worker/pipeline.py
    def work(self, claim: Claim) -> None:
        first = True
        while True:
            if not first and not self.renew(claim):
                self.release(claim, due_at=_now())
                return
            first = False
            self.count("passes")
            window = list(
                self.messages.find({"dialogue_id": claim.dialogue_id,
                                    "seq": {"$gte": max(0, claim.done_seq - CONTEXT_MESSAGES - HISTORY_SLACK)}})
                .sort([("seq", 1)])
                .limit(WINDOW)
            )  # fmt: skip
            wait = self.walk(claim, window)
            if wait is not None:
                self.count("waits")
                self.release(claim, due_at=wait)
                return
            if len(window) >= WINDOW:
                continue  # the read was full: more messages follow
            if not all(s in claim.voids for s in range(claim.done_seq + 1, claim.last_seq + 1)):
                again = self.unfilled_wait(claim)
                if again is not None:
                    self.count("waits")
                    self.release(claim, due_at=again)
                    return
            if self.release(claim, settled=True):
                return
            self.count("release_conflicts")

    def advance(self, claim: Claim) -> None:
        while claim.done_seq + 1 in claim.voids:
            claim.done_seq += 1

    def walk(self, claim: Claim, window: list[dict[str, Any]]) -> datetime | None:
        history = [d for d in window if (d.get("seq") or 0) <= claim.done_seq]
        owed = [d for d in window if (d.get("seq") or 0) > claim.done_seq]
        fresh: dict[int, ObjectId] = {}  # replies generated here, not stored yet
        position = 0
        while position < len(owed):
            doc = owed[position]
            seq = int(doc["seq"])
            self.advance(claim)
            for missing in range(claim.done_seq + 1, seq):
                if missing not in claim.voids:
                    until = self.unfilled_wait(claim)
                    if until is not None:
                        return until
            awaiting = doc["role"] == "USER" and doc.get("reply_state") == "awaiting"
            if awaiting and any(o.get("in_reply_to") == doc["message_id"] and o["role"] == "ASSISTANT" for o in owed):
                claim.replied.append(doc["_id"])  # replied already; the mark was still to be written
            elif awaiting:
                reply = self.generate(claim, user=doc, history=history)
                fresh[id(reply)] = doc["_id"]
                owed.insert(position + 1, reply)
            elif doc.get("delivery_state") in OWED_STATES and doc["role"] in ("ASSISTANT", "EMPLOYEE"):
                self.deliver(claim, reply=doc, answers=fresh.pop(id(doc), None))
            history.append(doc)
            claim.done_seq = max(claim.done_seq, seq)
            self.advance(claim)
            position += 1
        return None

    def generate(self, claim: Claim, *, user: dict[str, Any], history: list[dict[str, Any]]) -> dict[str, Any]:
        def items_of(docs: list[dict[str, Any]]) -> list[dict[str, str]]:
            return [{"role": d["role"], "text": d["text"]} for d in docs
                    if d.get("role") in ("USER", "ASSISTANT", "EMPLOYEE")][-CONTEXT_MESSAGES:]  # fmt: skip

        known = [*history, user]
        if len(items_of(known)) < CONTEXT_MESSAGES:
            # Empty positions left the read short: the older messages the context still needs.
            lowest = min(int(d.get("seq") or 0) for d in known)
            if lowest > 1:
                before = self.messages.find(
                    {"dialogue_id": claim.dialogue_id,
                     "seq": {"$gte": max(0, lowest - 3 * CONTEXT_MESSAGES), "$lt": lowest}}
                ).sort([("seq", 1)])  # fmt: skip
                known = [*before, *known]
        items = items_of(known)
        started = time.monotonic()
        text = mock_llm_text(items)
        reply = message_document(
            dialogue_id=claim.dialogue_id, chat_bot_id=claim.chat_bot_id, channel_id=claim.channel_id,
            message_id=str(uuid.uuid5(REPLY_ID_NAMESPACE, f"{claim.dialogue_id}/{user['message_id']}")),
            role="ASSISTANT", text=text, created_at=_now(),
            in_reply_to=user["message_id"], seq=int(user["seq"]) + 1, delivery_state="pending",
            claim_token=claim.token,
            llm={"llm_attempts": 1, "llm_backend": "mock", "llm_model": "", "prompt_tokens": None,
                 "completion_tokens": None, "llm_latency_ms": round((time.monotonic() - started) * 1000, 1)},
        )  # fmt: skip
        return reply

    def deliver(self, claim: Claim, *, reply: dict[str, Any], answers: ObjectId | None = None) -> None:
        """One attempt; a reply generated in this pass (`answers`) is stored with its outcome."""
        url, token = self.channels[claim.channel_id]
        # The same body and headers as channels_app.dispatch; one attempt.
        body = json.dumps(
            {"message_id": reply["message_id"], "role": reply["role"], "text": reply["text"], "chat_id": claim.chat_id,
             "in_reply_to": reply.get("in_reply_to")},
            ensure_ascii=False,
        ).encode("utf-8", "surrogatepass")  # fmt: skip
        response = self.session.post(
            url,
            data=body,
            headers={"x-chat_auth_token": f"Bearer {token}", "Content-Type": "application/json",
                     "Accept": "application/json", "Accept-Encoding": "identity", "User-Agent": "chatbot-platform/1.0",
                     "webhook-id": reply["message_id"]},
            timeout=(3, 10),
            allow_redirects=False,
        )  # fmt: skip
        status = response.status_code
        response.close()
        ok = 200 <= status < 300
        values = {"last_status_code": status, "last_error": "" if ok else f"Received status code {status}",
                  "delivery_state": "delivered" if ok else "dead", "delivered_at": _now() if ok else None,
                  "next_attempt_at": None}  # fmt: skip
        if answers is not None:
            reply.update(values, delivery_attempts=1)
            self.messages.insert_one(reply)
            claim.replied.append(answers)
        else:
            self.messages.update_one(
                {"_id": reply["_id"], "claim_token": claim.token, "delivery_state": {"$in": OWED_STATES}},
                {"$set": {**values, "claimed_until": None}, "$inc": {"delivery_attempts": 1}},
            )
        if ok:
            self.count("replies")


def worker_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.floor worker")
    parser.add_argument("--url", required=True)
    parser.add_argument("--db", required=True)
    parser.add_argument("--bot", required=True)
    parser.add_argument("--threads", type=int, required=True)
    args = parser.parse_args(argv)
    client: MongoClient = MongoClient(args.url)
    db = client[args.db]
    channels = {
        # The token is stored encrypted: decrypted with the stack's key, which this process
        # inherits (bench.stack), as the app's own worker does.
        doc["_id"]: (doc["settings"]["url"], secret_decrypt(doc["settings"]["token"]))
        for doc in db.channels_app_channel.find({"chat_bot_id": ObjectId(args.bot)})
    }
    worker = FloorWorker(db=db, threads=args.threads, channels=channels)
    signal.signal(signal.SIGTERM, lambda *_: worker.stopping.set())
    print("ready", flush=True)
    worker.run()
    worker.pool.shutdown(wait=True)
    print(json.dumps(worker.counts), flush=True)
    client.close()
    return 0


# --- in the benchmark's process --------------------------------------------------------------


class FloorWorkerProcess:
    """The floor's worker, started for one measured segment and stopped after it."""

    def __init__(self, *, url: str, db_name: str, bot_id: str, threads: int, log_path: Any):
        self.args = [sys.executable, "-m", "bench.floor", "worker", "--url", url, "--db", db_name, "--bot", bot_id,
                     "--threads", str(threads)]  # fmt: skip
        self.log_path = log_path
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> int:
        from bench.stack import ROOT

        self.process = subprocess.Popen(
            self.args,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=open(self.log_path, "a"),
            text=True,  # noqa: SIM115
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if line.strip() != "ready":
            raise SystemExit(f"error: the floor's worker did not start (see {self.log_path})")
        return self.process.pid

    def stop(self) -> dict[str, int]:
        assert self.process is not None and self.process.stdout is not None
        self.process.send_signal(signal.SIGTERM)
        out, _ = self.process.communicate(timeout=30)
        lines = [line for line in out.splitlines() if line.startswith("{")]
        return json.loads(lines[-1]) if lines else {}


def ingest_threads(
    ingest: FloorIngest, *, channel_ids: list[str], offset: int, messages: int, threads: int
) -> tuple[dict[str, float], list[float], list[str], float, float]:
    """Stores `messages` customer messages from `threads` threads, as fast as they go.
    Returns (acks by message_id on CLOCK_MONOTONIC, latencies in ms, errors, started, ended)."""
    work: queue.Queue[tuple[str, int]] = queue.Queue()
    k = len(channel_ids)
    for i in range(messages):
        work.put((channel_ids[(offset + i) % k], i))
    lock = threading.Lock()
    acks: dict[str, float] = {}
    latencies: list[float] = []
    errors: list[str] = []

    def run() -> None:
        while True:
            try:
                channel_id, i = work.get_nowait()
            except queue.Empty:
                return
            message_id = str(uuid.uuid4())
            started = clock()
            try:
                ingest.store(channel_id=ObjectId(channel_id), chat_id=channel_id, message_id=message_id,
                             text=f"Hello, I need help with order {i}")  # fmt: skip
            except Exception as exc:  # noqa: BLE001 - counted and reported
                with lock:
                    errors.append(type(exc).__name__)
                continue
            done = clock()
            with lock:
                acks[message_id] = done
                latencies.append((done - started) * 1000)

    pool = [threading.Thread(target=run) for _ in range(threads)]
    started = clock()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return acks, latencies, errors, started, clock()


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        sys.exit(worker_main(sys.argv[2:]))
    sys.exit("usage: python -m bench.floor worker --url U --db D --bot B --threads T")
