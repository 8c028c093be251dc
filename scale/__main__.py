"""`make scale`: the platform on several hosts behind a real nginx, one host killed mid-load,
then the database stopped, and proof that nothing was lost or answered twice.

    make scale                                     # 5,000 messages at concurrency 32
    make scale ARGS="--messages 300 --concurrency 8 --db-outage-s 3"   # the small version

On this machine, each "host" is a network namespace (scale/net.py) on a 198.18.X.0/24 the run
creates and removes: three app hosts (gunicorn with deploy/gunicorn.conf.py, and the worker),
one for nginx running deploy/nginx.conf unchanged, one for the channel receiver. The
embedded database listens on the bridge, shared by all. Needs root, iproute2 and nginx
(scripts/install-nginx).

The run, as one stream of webhook messages through nginx:
1. steady: all hosts up;
2. host down: at 25 % of the messages, one host's gunicorn and worker are killed (SIGKILL to
   each process group, as a machine dying would);
3. host back: at 50 %, they are started again;
4. database down: at 70 %, the database is stopped (SIGTERM) for --db-outage-s, then started
   again on the same data;
5. recovered: the rest.
A client retries what did not get a 2xx (as channels do), with the same `message_id`.

It fails (exit 1) unless every message is stored exactly once, every reply is delivered,
and the only repeated POSTs are replies that were in flight at the kill, each repeat
carrying the same `webhook-id`. Results go to bench-results/scale-<time>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import aiohttp
from cryptography.fernet import Fernet
from pymongo import MongoClient

from core.env import env_normalize
from devtools.embedded_mongo import EmbeddedMongo
from scale.net import Host, Network, missing_requirements

ROOT = Path(__file__).resolve().parent.parent
APP_PORT = 8000
RECEIVER_PORT = 9000
AUTH_HEADER = "x-chatbot_auth_token"  # the bot's secret goes in it: the wire contract's name
PHASES = ["steady", "host down", "host back", "database down", "recovered"]


def log(message: str) -> None:
    print(f"[scale {time.strftime('%H:%M:%S')}] {message}", flush=True)


def nginx_binary() -> str | None:
    for candidate in ("/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/bin/nginx"):
        if os.path.exists(candidate):
            return candidate
    return None


def percentile(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


class Cluster:
    def __init__(self, args: argparse.Namespace, work: Path):
        self.args = args
        self.work = work
        self.net = Network()
        self.db_name = f"scale_{secrets.token_hex(4)}"
        self.db: EmbeddedMongo | None = None
        self.app_hosts: list[Host] = []
        self.lb: Host | None = None
        self.rx: Host | None = None
        self.env: dict[str, str] = {}

    # --- set-up -------------------------------------------------------------------------------

    def up(self) -> None:
        self.net.up()
        log(f"network {self.net.prefix}.0/24 on bridge {self.net.bridge}")
        self.db = EmbeddedMongo(
            host=self.net.gateway, storage=str(self.work / "db"), log_file=self.work / "secantusd.log"
        ).start()
        self.env = {
            **os.environ,
            "MONGO_URL": self.db.app_url,
            "MONGO_DB_NAME": self.db_name,
            "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
            "SECRETS_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
            "DJANGO_ALLOWED_HOSTS": "*",
            "CHANNEL_ALLOW_PRIVATE_URLS": "true",  # the receiver is on 198.18.X.20
            "LLM_BACKEND": "mock",
            "SERVER_BIND": f"0.0.0.0:{APP_PORT}",
            "SERVER_WORKERS": str(self.args.gunicorn_workers),
            "SERVER_THREADS": "8",
            "SERVER_FORWARDED_ALLOW_IPS": "*",
            "WORKER_THREADS": str(self.args.worker_threads),
            # A dead worker's dialogues come back when its lease runs out: LLM_TIMEOUT_S +
            # CHANNEL_ATTEMPT_TIMEOUT_S + 10 s. The mock LLM and the receiver answer in
            # milliseconds, so shorter limits than the defaults shorten the wait, not the proof.
            "LLM_TIMEOUT_S": str(self.args.llm_timeout_s),
            "CHANNEL_ATTEMPT_TIMEOUT_S": "5",
            "DELIVERY_RETRY_BASE_S": "0.5",
            "DELIVERY_RETRY_MAX_S": "2",
            "LOG_LEVEL": "WARNING",
        }
        self.env.pop("DJANGO_DEBUG", None)
        subprocess.run([sys.executable, "manage.py", "migrate", "--no-input", "-v", "0"], cwd=ROOT, env=self.env,
                       check=True)  # fmt: skip
        self.rx = self.net.add_host("rx", 20)
        receiver = [sys.executable, "-m", "devtools.receiver", "--host", self.rx.address, "--port", str(RECEIVER_PORT),
                    "--keep-requests"]  # fmt: skip
        self.rx.start("receiver", receiver, env=self.env, log=self.work / "receiver.log", cwd=ROOT)
        for number in range(1, self.args.hosts + 1):
            host = self.net.add_host(f"h{number}", 10 + number)
            self.app_hosts.append(host)
            self.start_app(host)
        self.lb = self.net.add_host("lb", 2)
        self.start_nginx()
        for host in self.app_hosts:
            self.wait_ready(f"http://{host.address}:{APP_PORT}/readyz", host.name)
        self.wait_ready(f"{self.url}/readyz", "nginx")
        self.wait_ready(f"http://{self.rx.address}:{RECEIVER_PORT}/log", "receiver")

    @property
    def url(self) -> str:
        assert self.lb is not None
        return f"http://{self.lb.address}"

    @property
    def webhook_url(self) -> str:
        return f"{self.url}/api/webhook/new_message"

    def start_app(self, host: Host) -> None:
        gunicorn = str(Path(sys.executable).with_name("gunicorn"))
        host.start("gunicorn", [gunicorn, "-c", "deploy/gunicorn.conf.py", "config.wsgi:application"],
                   env=self.env, log=self.work / f"{host.name}-gunicorn.log", cwd=ROOT)  # fmt: skip
        host.start("worker", [sys.executable, "manage.py", "run_worker"], env=self.env,
                   log=self.work / f"{host.name}-worker.log", cwd=ROOT)  # fmt: skip

    def start_nginx(self) -> None:
        """deploy/nginx.conf as shipped, included in a minimal main configuration; the upstream
        list (the one file users write themselves) names this run's hosts."""
        assert self.lb is not None
        binary = nginx_binary()
        assert binary is not None
        conf = self.work / "nginx"
        conf.mkdir()
        (conf / "chatbots-upstream.conf").write_text(
            "".join(f"server {h.address}:{APP_PORT} max_fails=1 fail_timeout=5s;\n" for h in self.app_hosts)
        )
        (conf / "nginx.conf").write_text(
            f"""daemon off;
user root;
worker_processes 1;
pid {conf}/nginx.pid;
error_log {conf}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {conf}/body;
    proxy_temp_path {conf}/proxy;
    fastcgi_temp_path {conf}/fastcgi;
    uwsgi_temp_path {conf}/uwsgi;
    scgi_temp_path {conf}/scgi;
    include {ROOT}/deploy/nginx.conf;
}}
"""
        )
        check = subprocess.run(["ip", "netns", "exec", self.lb.namespace, binary, "-t", "-p", str(conf), "-c",
                                str(conf / "nginx.conf")], capture_output=True, text=True)  # fmt: skip
        if check.returncode != 0:
            raise SystemExit(f"nginx -t refused the configuration:\n{check.stderr}")
        self.lb.start("nginx", [binary, "-p", str(conf), "-c", str(conf / "nginx.conf")], env=self.env,
                      log=self.work / "nginx.log", cwd=ROOT)  # fmt: skip

    def wait_ready(self, url: str, what: str, timeout: float = 60) -> None:
        import requests

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if requests.get(url, timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise SystemExit(f"{what} did not answer {url} within {timeout:.0f} s (logs in {self.work})")

    def seed(self) -> tuple[str, str, str]:
        """A bot and a channel pointing at the receiver: (secret, channel id, bot id)."""
        assert self.rx is not None
        code = (
            "import json\n"
            "from chatbots.services import chatbot_create\n"
            "from channels_app.services import channel_create\n"
            "bot, secret = chatbot_create(name='scale')\n"
            f"channel = channel_create(chat_bot=bot, name='scale', url='http://{self.rx.address}:{RECEIVER_PORT}/hook')\n"
            "print(json.dumps([secret, str(channel.pk), str(bot.pk)]))\n"
        )
        out = subprocess.run([sys.executable, "manage.py", "shell", "--no-imports", "-c", code], cwd=ROOT,
                             env=self.env, check=True, capture_output=True, text=True).stdout  # fmt: skip
        secret, channel_id, bot_id = json.loads(out.strip().splitlines()[-1])
        return secret, channel_id, bot_id

    # --- faults -------------------------------------------------------------------------------

    def kill_host(self, host: Host) -> None:
        host.kill("gunicorn", signal.SIGKILL)
        host.kill("worker", signal.SIGKILL)

    def db_stop(self) -> None:
        assert self.db is not None
        self.db.stop()

    def db_start(self) -> None:
        assert self.db is not None
        self.db.start()

    def down(self) -> None:
        for host in [*self.app_hosts, *(h for h in (self.lb, self.rx) if h)]:
            host.kill_all(signal.SIGTERM)
        self.net.down()
        if self.db is not None:
            self.db.stop()


class Load:
    """One stream of webhook messages at a fixed concurrency, retried until a 2xx like a
    channel would, each tagged with the phase it was first sent in."""

    def __init__(self, cluster: Cluster, *, secret: str, channel_id: str, messages: int, concurrency: int):
        self.cluster = cluster
        self.secret = secret
        self.channel_id = channel_id
        self.messages = messages
        self.concurrency = concurrency
        self.run_id = secrets.token_hex(3)
        self.phase = PHASES[0]
        self.phase_started: dict[str, float] = {PHASES[0]: time.monotonic()}
        self.phase_ended: dict[str, float] = {}
        self.done = 0
        self.latency: dict[str, list[float]] = defaultdict(list)
        self.non_2xx: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.statuses: Counter[int] = Counter()
        self.refused: list[tuple[int, int, str]] = []
        self.killed_at: float | None = None

    def body(self, index: int) -> dict[str, Any]:
        return {
            "message_id": f"scale-{self.run_id}-{index}",
            "chat_id": f"chat-{index % self.cluster.args.chats}",
            "channel_id": self.channel_id,
            "text": f"question {index}",
            "message_sender": "customer",
        }

    def enter(self, phase: str) -> None:
        now = time.monotonic()
        self.phase_ended[self.phase] = now
        self.phase = phase
        self.phase_started[phase] = now
        log(f"phase: {phase} (after {self.done} messages acknowledged)")

    async def send(self, session: aiohttp.ClientSession, index: int) -> None:
        phase = self.phase
        started = time.monotonic()
        body = self.body(index)
        headers = {AUTH_HEADER: f"Bearer {self.secret}"}
        delay = 0.2
        while True:
            try:
                async with session.post(self.cluster.webhook_url, json=body, headers=headers) as response:
                    await response.read()
                    status = response.status
            except (aiohttp.ClientError, TimeoutError) as exc:
                self.errors[self.phase] += 1
                status = 0
                reason = type(exc).__name__
            else:
                self.statuses[status] += 1
                reason = str(status)
            if 200 <= status < 300:
                break
            if status and status not in (429, 502, 503, 504):
                self.refused.append((index, status, phase))  # a 4xx: the message is refused for good
                break
            # Counted in the phase it happened in (the message may have been sent in an earlier one).
            self.non_2xx[self.phase] += 1 if status else 0
            if time.monotonic() - started > self.cluster.args.give_up_s:
                self.refused.append((index, status, f"{phase}: gave up after {reason}"))
                break
            await asyncio.sleep(delay)
            delay = min(2.0, delay * 2)
        # Latency (first send to 2xx, retries included) in the phase the message was first sent in.
        self.latency[phase].append(time.monotonic() - started)
        self.done += 1

    async def run(self, events: list[tuple[float, Any]]) -> None:
        queue: asyncio.Queue[int] = asyncio.Queue()
        for index in range(self.messages):
            queue.put_nowait(index)
        timeout = aiohttp.ClientTimeout(total=30)
        connector = aiohttp.TCPConnector(limit=self.concurrency)
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:

            async def client() -> None:
                while not queue.empty():
                    await self.send(session, queue.get_nowait())

            async def director() -> None:
                for fraction, action in events:
                    while self.done < fraction * self.messages:
                        await asyncio.sleep(0.02)
                    await action()

            await asyncio.gather(director(), *(client() for _ in range(self.concurrency)))
        self.phase_ended[self.phase] = time.monotonic()

    def report(self) -> list[dict[str, Any]]:
        rows = []
        for phase in PHASES:
            if phase not in self.phase_started:
                continue
            values = self.latency.get(phase, [])
            seconds = self.phase_ended.get(phase, time.monotonic()) - self.phase_started[phase]
            rows.append(
                {
                    "phase": phase,
                    "messages": len(values),
                    "seconds": round(seconds, 2),
                    "acks_per_s": round(len(values) / seconds, 1) if seconds > 0 else None,
                    "p50_ms": round(1000 * (percentile(values, 0.5) or 0), 1),
                    "p99_ms": round(1000 * (percentile(values, 0.99) or 0), 1),
                    "non_2xx": self.non_2xx.get(phase, 0),
                    "connection_errors": self.errors.get(phase, 0),
                }
            )
        return rows


def wait_for_replies(db: Any, *, bot_id: str, expected: int, timeout: float) -> float:
    from bson import ObjectId

    started = time.monotonic()
    deadline = started + timeout
    query = {"chat_bot_id": ObjectId(bot_id), "role": "ASSISTANT", "delivery_state": "delivered"}
    while time.monotonic() < deadline:
        if db.dialogues_message.count_documents(query) >= expected:
            break
        time.sleep(0.5)
    return time.monotonic() - started


def verify(db: Any, received: list[dict[str, Any]], *, bot_id: str, messages: int, run_id: str,
           worker_threads: int) -> dict[str, Any]:  # fmt: skip
    """What the run proves, each a number and a verdict."""
    from bson import ObjectId

    bot = ObjectId(bot_id)
    users = list(db.dialogues_message.find({"chat_bot_id": bot, "role": "USER"}, {"message_id": 1}))
    user_ids = Counter(doc["message_id"] for doc in users)
    expected_ids = {f"scale-{run_id}-{index}" for index in range(messages)}
    replies = list(db.dialogues_message.find({"chat_bot_id": bot, "role": "ASSISTANT"},
                                             {"message_id": 1, "in_reply_to": 1, "delivery_state": 1}))  # fmt: skip
    reply_ids = {doc["message_id"] for doc in replies}
    replies_per_message = Counter(doc["in_reply_to"] for doc in replies)
    posts_per_key = Counter(post["webhook_id"] for post in received)
    keys_per_message: dict[str, set[str]] = defaultdict(set)
    for post in received:
        keys_per_message[post["in_reply_to"]].add(post["webhook_id"])
    repeats = {key: count for key, count in posts_per_key.items() if count > 1}
    checks = {
        "messages_stored": len(users),
        "messages_stored_once": set(user_ids) == expected_ids and all(n == 1 for n in user_ids.values()),
        "replies_stored": len(replies),
        "one_reply_per_message": set(replies_per_message) == expected_ids
        and all(n == 1 for n in replies_per_message.values()),
        "replies_delivered": sum(1 for doc in replies if doc.get("delivery_state") == "delivered"),
        "every_reply_received": set(posts_per_key) == reply_ids and len(reply_ids) == messages,
        "posts_received": len(received),
        "repeated_posts": sum(count - 1 for count in repeats.values()),
        "repeats_carry_the_same_key": all(post["webhook_id"] == post["message_id"] for post in received),
        "no_message_answered_under_two_keys": all(len(keys) == 1 for keys in keys_per_message.values()),
        # A repeat is a reply the killed worker had posted but not yet recorded: at most one
        # per thread of that worker, each sent twice.
        "repeats_only_from_the_kill": len(repeats) <= worker_threads and all(n == 2 for n in repeats.values()),
    }
    checks["passed"] = all(
        checks[name]
        for name in ("messages_stored_once", "one_reply_per_message", "every_reply_received",
                     "repeats_carry_the_same_key", "no_message_answered_under_two_keys", "repeats_only_from_the_kill")
    ) and checks["replies_delivered"] == messages  # fmt: skip
    return checks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Several hosts behind nginx, a host killed, the database stopped.")
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--hosts", type=int, default=3)
    parser.add_argument("--chats", type=int, default=200, help="conversations the messages are spread over")
    parser.add_argument("--db-outage-s", type=float, default=10.0)
    parser.add_argument("--gunicorn-workers", type=int, default=1, help="gunicorn processes per host")
    parser.add_argument("--worker-threads", type=int, default=8, help="WORKER_THREADS per host")
    parser.add_argument("--llm-timeout-s", type=float, default=10.0, help="LLM_TIMEOUT_S on the hosts")
    parser.add_argument("--give-up-s", type=float, default=120.0, help="a client stops retrying one message after")
    parser.add_argument("--replies-timeout-s", type=float, default=180.0)
    parser.add_argument("--out", type=Path, help="where to write the JSON result (default bench-results/)")
    args = parser.parse_args(argv)
    env_normalize(os.environ)  # old names (MONGO__URL, SERVER__WORKERS) still work
    missing = missing_requirements() + ([] if nginx_binary() else ["nginx (scripts/install-nginx)"])
    if missing:
        print(f"make scale needs: {', '.join(missing)}", file=sys.stderr)
        return 2
    os.chdir(ROOT)
    work = Path(tempfile.mkdtemp(prefix="chatbots-scale-"))
    cluster = Cluster(args, work)
    started = time.monotonic()

    def stop(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        cluster.up()
        secret, channel_id, bot_id = cluster.seed()
        victim = cluster.app_hosts[1 % len(cluster.app_hosts)]
        load = Load(cluster, secret=secret, channel_id=channel_id, messages=args.messages,
                    concurrency=args.concurrency)  # fmt: skip
        loop_time: dict[str, float] = {}

        async def kill() -> None:
            load.enter("host down")
            log(f"kill -9: gunicorn and worker of {victim.name} ({victim.address})")
            cluster.kill_host(victim)
            load.killed_at = time.time()

        async def revive() -> None:
            load.enter("host back")
            log(f"restarting {victim.name}")
            cluster.start_app(victim)

        async def database_outage() -> None:
            load.enter("database down")
            log(f"stopping the database for {args.db_outage_s:g} s")
            await asyncio.get_running_loop().run_in_executor(None, cluster.db_stop)
            loop_time["db_stopped"] = time.monotonic()
            await asyncio.sleep(args.db_outage_s)
            # In this thread: the server dies with the thread that started it (PR_SET_PDEATHSIG
            # follows the thread), and an executor's threads end with the event loop.
            cluster.db_start()
            log("database back")
            load.enter("recovered")

        log(f"{args.messages} messages through nginx at concurrency {args.concurrency}, {args.hosts} hosts")
        asyncio.run(load.run([(0.25, kill), (0.50, revive), (0.70, database_outage)]))
        assert cluster.db is not None
        client: MongoClient[dict[str, Any]] = MongoClient(cluster.db.url)
        db = client[cluster.db_name]
        expected = args.messages - len(load.refused)
        waited = wait_for_replies(db, bot_id=bot_id, expected=expected, timeout=args.replies_timeout_s)
        time.sleep(1.0)  # a repeat still on its way arrives
        import requests

        received = requests.get(f"http://{cluster.rx.address}:{RECEIVER_PORT}/log", timeout=30).json()  # type: ignore[union-attr]
        checks = verify(db, received, bot_id=bot_id, messages=args.messages, run_id=load.run_id,
                        worker_threads=args.worker_threads)  # fmt: skip
        client.close()
        result = {
            "settings": {key: value for key, value in vars(args).items() if key != "out"},
            "machine": {"cpus": os.cpu_count()},
            "phases": load.report(),
            "refused": load.refused[:20],
            "statuses": {str(k): v for k, v in sorted(load.statuses.items())},
            "replies_complete_after_load_s": round(waited, 1),
            "total_s": round(time.monotonic() - started, 1),
            "checks": checks,
            # Answers a dying host had begun (nginx had passed their header on) and never
            # finished: no proxy can send those again elsewhere, so each reaches its client as a
            # broken connection, which the client retries with the same `message_id`.
            "responses_cut_by_the_kill": responses_cut(work / "nginx" / "error.log"),
        }
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    finally:
        cluster.down()
    print_report(result)
    out = args.out or ROOT / "bench-results" / f"scale-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    log(f"result in {out}; logs in {work}")
    return 0 if checks["passed"] and not load.refused else 1


def responses_cut(error_log: Path) -> int:
    """nginx's count of upstream answers cut off after their header (its error log: "upstream
    prematurely closed connection while reading upstream"; "... while reading response
    header" is a request it could still send to another host)."""
    try:
        text = error_log.read_text(errors="replace")
    except OSError:
        return 0
    return text.count("prematurely closed connection while reading upstream,")


def print_report(result: dict[str, Any]) -> None:
    print(f"\n{'phase':<15}{'messages':>9}{'s':>8}{'acks/s':>8}{'p50 ms':>9}{'p99 ms':>9}{'non-2xx':>9}{'conn err':>9}")
    for row in result["phases"]:
        print(f"{row['phase']:<15}{row['messages']:>9}{row['seconds']:>8}{row['acks_per_s'] or 0:>8}"
              f"{row['p50_ms']:>9}{row['p99_ms']:>9}{row['non_2xx']:>9}{row['connection_errors']:>9}")  # fmt: skip
    print()
    for name, value in result["checks"].items():
        print(f"  {name}: {value}")
    print(f"  every reply delivered {result['replies_complete_after_load_s']} s after the last acknowledgement")
    print(f"  total {result['total_s']} s\n")


if __name__ == "__main__":
    sys.exit(main())
