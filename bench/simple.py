"""The simplest-design floor: the least a correct webhook-to-reply service does, as a floor for the
design (bench.floor, the app's own pipeline without a framework, is one for the code).

A tiny synchronous WSGI app, served by gunicorn with the app's worker class and counts
(gthread, SERVER_WORKERS x SERVER_THREADS), one pymongo connection per process
(`maxPoolSize=1`, the app's client options), on the same embedded server, in a database of
its own (`bench_simple`). It answers the app's webhook contract (`POST
/api/webhook/new_message`, the bot's secret in `x-chatbot_auth_token: Bearer ...`, the JSON
body `{message_id, chat_id, text, message_sender[, channel_id]}`), so the benchmark's load
generator drives it unchanged. Each request does the whole job before it answers:

1. the bot by the sha256 of its secret (unique index), the channel by `_id` (another bot's
   channel is unknown: 404);
2. the dialogue by (bot, chat_id) (unique index): found and touched (`last_message_at`, by
   `_id`), or created by its first message (a racing creation loses on the index and reads
   the winner's);
3. the customer's message inserted; the unique (dialogue_id, message_id) index decides a
   duplicate, which is answered 200 with nothing more done (never answer twice);
4. the reply from the mock LLM (the app's text, llm.mock; LLM_MOCK_DELAY_MS honoured),
   inserted as pending, POSTed once to the channel (the app's body and headers: the channel's
   token, `webhook-id` = the reply's id), and its delivery state updated with the outcome;
5. the 200.

Its only indexes are those unique ones and `_id`. Left out, by design: a worker and a queue
(the webhook waits for the LLM and the channel), retries (a failed POST stays `failed`; a
request that dies after step 3 leaves its message unanswered, and the channel's retry is a
duplicate), ordering across concurrent requests of one dialogue, the LLM's context (the
mock sees the message alone), a bot's pause and operators, rate limits, signatures, secrets
encrypted at rest, logging and metrics.

gunicorn serves `bench.simple:application`; `SimpleServer` starts it for a benchmark run and
creates its tenants.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
from bson import ObjectId
from bson.errors import InvalidId
from pymongo import ASCENDING, MongoClient
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError
from requests.adapters import HTTPAdapter

from llm.mock import mock_llm_text

DB_NAME = "bench_simple"
WEBHOOK_PATH = "/api/webhook/new_message"
URL_ENV = "BENCH_SIMPLE_MONGO_URL"
DB_ENV = "BENCH_SIMPLE_DB_NAME"
BODY_MAX_BYTES = 1024 * 1024
# One attempt, with the app's connect and read timeouts (channels_app.outgoing_http).
POST_TIMEOUT_S = (3, 10)


def token_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def indexes_ensure(db: Database) -> None:
    db.bots.create_index([("token_hash", ASCENDING)], unique=True)
    db.dialogues.create_index([("bot_id", ASCENDING), ("chat_id", ASCENDING)], unique=True)
    db.messages.create_index([("dialogue_id", ASCENDING), ("message_id", ASCENDING)], unique=True)


class BadRequest(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def _bearer(environ: dict[str, Any]) -> str:
    raw = environ.get("HTTP_X_CHATBOT_AUTH_TOKEN") or environ.get("HTTP_AUTHORIZATION") or ""
    parts = raw.split()
    if len(parts) != 2 or parts[0].lower() != "bearer":
        raise BadRequest(401, "Invalid authorization header format, expected 'Bearer <token>'")
    return parts[1]


def _payload(environ: dict[str, Any]) -> dict[str, Any]:
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise BadRequest(400, "bad Content-Length") from None
    if length > BODY_MAX_BYTES:
        raise BadRequest(413, "body too large")
    try:
        data = json.loads(environ["wsgi.input"].read(length))
    except ValueError:
        raise BadRequest(400, "body is not JSON") from None
    if not isinstance(data, dict):
        raise BadRequest(400, "body is not a JSON object")
    for name in ("chat_id", "text"):
        if not isinstance(data.get(name), str) or not data[name]:
            raise BadRequest(400, f"{name} must be a non-empty string")
    for name in ("message_id", "channel_id"):
        if data.get(name) is not None and not isinstance(data[name], str):
            raise BadRequest(400, f"{name} must be a string")
    if data.get("message_sender") not in ("customer", "employee"):
        raise BadRequest(400, "message_sender must be 'customer' or 'employee'")
    return data


class SimpleApp:
    """The WSGI app. Its database client is opened on the first request, in the process that
    serves it (after gunicorn's fork)."""

    def __init__(self, *, mongo_url: str, db_name: str):
        self.mongo_url = mongo_url
        self.db_name = db_name
        self._db: Database | None = None
        self._lock = threading.Lock()
        self.session = requests.Session()
        self.session.mount("http://", HTTPAdapter(pool_connections=16, pool_maxsize=64, max_retries=0))
        self.llm_delay_s = int(os.environ.get("LLM_MOCK_DELAY_MS") or 0) / 1000

    @property
    def db(self) -> Database:
        with self._lock:
            if self._db is None:
                self._db = MongoClient(self.mongo_url)[self.db_name]
            return self._db

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        if environ.get("REQUEST_METHOD") != "POST" or environ.get("PATH_INFO") != WEBHOOK_PATH:
            status, answer = 404, {"detail": "not found"}
        else:
            try:
                status, answer = 200, self.webhook(environ)
            except BadRequest as exc:
                status, answer = exc.status, {"detail": str(exc)}
        body = json.dumps(answer).encode()
        reason = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 413: "Too Large"}
        start_response(f"{status} {reason.get(status, 'Error')}",
                       [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])  # fmt: skip
        return [body]

    def webhook(self, environ: dict[str, Any]) -> dict[str, Any]:
        secret = _bearer(environ)
        data = _payload(environ)
        db = self.db
        bot = db.bots.find_one({"token_hash": token_hash(secret)})
        if bot is None:
            raise BadRequest(401, "Invalid token")
        try:
            channel = db.channels.find_one({"_id": ObjectId(data.get("channel_id") or data["chat_id"])})
        except InvalidId:
            channel = None
        if channel is None or channel["bot_id"] != bot["_id"]:
            raise BadRequest(404, "Channel not found")
        now = datetime.now(UTC)
        dialogue_id = self.dialogue_touch(bot_id=bot["_id"], chat_id=data["chat_id"], now=now)
        message_id = data.get("message_id") or str(uuid.uuid4())
        customer = data["message_sender"] == "customer"
        answer: dict[str, Any] = {"status": "Message processed successfully", "message_id": message_id,
                                  "dialogue_id": str(dialogue_id), "duplicate": False, "ignored": not customer,
                                  "replied": False, "delivery": None}  # fmt: skip
        try:
            db.messages.insert_one({"dialogue_id": dialogue_id, "message_id": message_id,
                                    "role": "USER" if customer else "EMPLOYEE", "text": data["text"],
                                    "created_at": now})  # fmt: skip
        except DuplicateKeyError:
            return answer | {"duplicate": True, "ignored": True}
        if not customer:
            return answer
        if self.llm_delay_s:
            time.sleep(self.llm_delay_s)
        reply = {"_id": ObjectId(), "dialogue_id": dialogue_id, "message_id": str(uuid.uuid4()), "role": "ASSISTANT",
                 "text": mock_llm_text([{"role": "USER", "text": data["text"]}]), "in_reply_to": message_id,
                 "created_at": datetime.now(UTC), "delivery_state": "pending"}  # fmt: skip
        db.messages.insert_one(reply)
        status = self.post(channel=channel, chat_id=data["chat_id"], reply=reply)
        delivered = 200 <= status < 300
        db.messages.update_one(
            {"_id": reply["_id"]},
            {"$set": {"delivery_state": "delivered" if delivered else "failed", "last_status_code": status,
                      "delivered_at": datetime.now(UTC) if delivered else None}},
        )  # fmt: skip
        return answer | {"replied": True, "reply_message_id": reply["message_id"],
                         "delivery": "delivered" if delivered else "failed"}  # fmt: skip

    def dialogue_touch(self, *, bot_id: ObjectId, chat_id: str, now: datetime) -> ObjectId:
        key = {"bot_id": bot_id, "chat_id": chat_id}
        found = self.db.dialogues.find_one(key)
        if found is None:
            dialogue_id = ObjectId()
            try:
                self.db.dialogues.insert_one({"_id": dialogue_id, **key, "created_at": now, "last_message_at": now})
                return dialogue_id
            except DuplicateKeyError:  # another request created it first
                found = self.db.dialogues.find_one(key)
                assert found is not None
        self.db.dialogues.update_one({"_id": found["_id"]}, {"$max": {"last_message_at": now}})
        return found["_id"]

    def post(self, *, channel: dict[str, Any], chat_id: str, reply: dict[str, Any]) -> int:
        """One attempt, the app's body and headers (channels_app.dispatch); 0 when no answer came."""
        body = json.dumps({"message_id": reply["message_id"], "role": "ASSISTANT", "text": reply["text"],
                           "chat_id": chat_id, "in_reply_to": reply["in_reply_to"]}, ensure_ascii=False)  # fmt: skip
        headers = {"x-chat_auth_token": f"Bearer {channel['token']}", "Content-Type": "application/json",
                   "Accept": "application/json", "Accept-Encoding": "identity", "User-Agent": "chatbot-platform/1.0",
                   "webhook-id": reply["message_id"]}  # fmt: skip
        try:
            response = self.session.post(channel["url"], data=body.encode("utf-8", "surrogatepass"), headers=headers,
                                         timeout=POST_TIMEOUT_S, allow_redirects=False)  # fmt: skip
        except requests.RequestException:
            return 0
        response.close()
        return response.status_code


def _application() -> SimpleApp | None:
    url = os.environ.get(URL_ENV)
    return SimpleApp(mongo_url=url, db_name=os.environ.get(DB_ENV, DB_NAME)) if url else None


# What gunicorn serves (`bench.simple:application`), configured from the environment.
application = _application()


# --- in the benchmark's process --------------------------------------------------------------


def _wait_port(url: str, process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"error: the simple floor's gunicorn exited with status {process.returncode}")
        try:
            urllib.request.urlopen(url + "/", timeout=1).close()
            return
        except urllib.error.HTTPError:
            return  # it answers (404 for GET /): it is up
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"error: the simple floor did not answer {url} within {timeout:.0f} s")


class SimpleServer:
    """The simple floor under gunicorn, started once for a run, with its own database."""

    def __init__(self, *, mongo_url: str, admin_url: str, workers: str, threads: str, log_path: Path,
                 db_name: str = DB_NAME):  # fmt: skip
        from devtools.embedded_mongo import free_port

        self.port = free_port()
        self.db_name = db_name
        self.mongo_url = mongo_url
        self.workers, self.threads = workers, threads
        self.log_path = log_path
        self.client: MongoClient = MongoClient(admin_url)
        self.db = self.client[db_name]
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> SimpleServer:
        indexes_ensure(self.db)
        gunicorn = str(Path(sys.executable).with_name("gunicorn"))
        # The app's worker class and counts (deploy/gunicorn.conf.py); headers with underscores
        # kept, as the app's config keeps them (`x-chatbot_auth_token`).
        command = [gunicorn, "--worker-class", "gthread", "--workers", self.workers, "--threads", self.threads,
                   "--bind", f"127.0.0.1:{self.port}", "--header-map", "dangerous", "--no-control-socket",
                   "--timeout", "60", "bench.simple:application"]  # fmt: skip
        env = {**os.environ, URL_ENV: self.mongo_url, DB_ENV: self.db_name}
        from bench.stack import ROOT
        from devtools.embedded_mongo import die_with_parent

        self.process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=open(self.log_path, "ab"),  # noqa: SIM115
                                        stderr=subprocess.STDOUT, preexec_fn=die_with_parent)  # fmt: skip
        _wait_port(self.url, self.process)
        return self

    def pids(self) -> list[int]:
        """gunicorn's master and its workers."""
        assert self.process is not None
        out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(self.process.pid)], capture_output=True, text=True)
        return [self.process.pid, *(int(p) for p in out.stdout.split())]

    def tenant(self, *, name: str, channel_urls: list[str]) -> tuple[str, list[str]]:
        """A bot with one channel per URL: (its secret, the channel ids)."""
        secret = secrets.token_urlsafe(32)
        bot_id = self.db.bots.insert_one({"name": name, "token_hash": token_hash(secret)}).inserted_id
        channel_ids = [
            str(self.db.channels.insert_one({"bot_id": bot_id, "url": url, "token": secrets.token_urlsafe(16)})
                .inserted_id)
            for url in channel_urls
        ]  # fmt: skip
        return secret, channel_ids

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.client.close()
